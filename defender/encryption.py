"""Encryption at rest for secrets (client secrets, proxy passwords).

Ciphertexts are stored as ``fernet:v1:<token>``: the marker names the scheme so that a later scheme can sit beside it,
and MultiFernet over FIELD_ENCRYPTION_KEYS (first key encrypts, every key decrypts) lets keys rotate without downtime.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MARKER = "fernet:v1:"


class DecryptionError(Exception):
    """A stored secret that no configured key opens. The message names the record, never the secret."""


@lru_cache(maxsize=4)
def _fernet_for(keys):
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty: set at least one Fernet key.")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"Key {position} in FIELD_ENCRYPTION_KEYS is not a Fernet key (32 url-safe base64-encoded bytes)."
            ) from exc
    return MultiFernet(fernets)


def fernet():
    return _fernet_for(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext):
    return MARKER + fernet().encrypt(plaintext.encode()).decode()


def decrypt(stored, where="a stored secret"):
    if not stored.startswith(MARKER):
        raise DecryptionError(f"Cannot decrypt {where}: it is not in a known encrypted format.")
    try:
        return fernet().decrypt(stored[len(MARKER) :].encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            f"Cannot decrypt {where}: none of the keys in FIELD_ENCRYPTION_KEYS opens it. "
            "Put back the key it was encrypted with, or enter the secret again."
        ) from None


def rotate(stored, where="a stored secret"):
    """Re-encrypt with the current first key (raises DecryptionError if no key opens it)."""
    if not stored.startswith(MARKER):
        raise DecryptionError(f"Cannot rotate {where}: it is not in a known encrypted format.")
    try:
        return MARKER + fernet().rotate(stored[len(MARKER) :].encode()).decode()
    except InvalidToken:
        raise DecryptionError(f"Cannot rotate {where}: none of the keys in FIELD_ENCRYPTION_KEYS opens it.") from None
