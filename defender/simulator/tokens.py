"""JWT-shaped access tokens, signed RS256 with a key the simulator makes for itself at start.

Clients never verify these tokens (they only decode the claims to check `roles`), but the simulated APIs do, so a
token from another run, a tampered token or an expired one is refused the way the real APIs refuse them.
"""

import base64
import json
import time
import uuid

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class InvalidToken(Exception):
    """The bearer token cannot be trusted; the message says why, in the words the APIs use."""


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64url(number):
    return _b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


class TokenSigner:
    def __init__(self):
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = _b64url(uuid.uuid4().bytes)

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "kid": self.key_id}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def verify(self, token, now=None):
        """Return the claims of a token this signer issued and that is within its lifetime."""
        try:
            header_part, claims_part, signature_part = token.split(".")
            header = json.loads(_b64url_decode(header_part))
            claims = json.loads(_b64url_decode(claims_part))
            signature = _b64url_decode(signature_part)
        except ValueError as exc:
            raise InvalidToken("IDX14100: JWT is not well formed.") from exc
        if header.get("alg") != "RS256" or header.get("kid") != self.key_id:
            raise InvalidToken("IDX10503: Signature validation failed. The token's kid is unknown.")
        try:
            self._key.public_key().verify(
                signature, f"{header_part}.{claims_part}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature as exc:
            raise InvalidToken("IDX10511: Signature validation failed.") from exc
        now = time.time() if now is None else now
        if now >= claims.get("exp", 0):
            raise InvalidToken("IDX10223: Lifetime validation failed. The token is expired.")
        if now < claims.get("nbf", 0):
            raise InvalidToken("IDX10222: Lifetime validation failed. The token is not yet valid.")
        return claims

    def jwks(self):
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.key_id,
                    "n": _int_b64url(numbers.n),
                    "e": _int_b64url(numbers.e),
                }
            ]
        }


def decode_claims(token):
    """The claims of a JWT without verifying it, as a client inspecting its `roles` would read them."""
    return json.loads(_b64url_decode(token.split(".")[1]))
