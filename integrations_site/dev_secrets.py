"""Development-only keys, generated once into ``var/`` so that a fresh checkout runs with no settings at all.

Never used when DEBUG is off: production must set SECRET_KEY and FIELD_ENCRYPTION_KEYS itself.
"""

import json
import secrets
import sys

from cryptography.fernet import Fernet

from integrations_site.private_files import make_private, write_private


def load_or_create(var_dir):
    path = var_dir / "dev-secrets.json"
    if path.exists():
        make_private(path)
        return json.loads(path.read_text())
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    write_private(path, json.dumps(values, indent=2))
    print(
        f"WARNING: generated development keys in {path}. Set SECRET_KEY and FIELD_ENCRYPTION_KEYS in production.",
        file=sys.stderr,
    )
    return values
