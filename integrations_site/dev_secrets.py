"""Development-only keys, generated once into ``var/`` so that a fresh checkout runs with no settings at all.

Never used when DEBUG is off: production must set SECRET_KEY and FIELD_ENCRYPTION_KEYS itself.
"""

import json
import secrets
import sys

from cryptography.fernet import Fernet


def load_or_create(var_dir):
    path = var_dir / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    var_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    print(
        f"WARNING: generated development keys in {path}. Set SECRET_KEY and FIELD_ENCRYPTION_KEYS in production.",
        file=sys.stderr,
    )
    return values
