"""Remote-node access tokens: 256 random bits, shown once; the site stores only their SHA-256."""

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from defender.models import RemoteNode

PREFIX = "rn1_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(node: "RemoteNode") -> str:
    """Give the node a new token (replacing any other) and return it; it cannot be read back later."""
    token = PREFIX + secrets.token_urlsafe(32)
    node.token_hash = token_hash(token)
    node.token_hint = token[:10]
    node.token_issued_at = timezone.now()
    node.revoked_at = None
    node.save(update_fields=["token_hash", "token_hint", "token_issued_at", "revoked_at"])
    return token


def revoke(node: "RemoteNode") -> None:
    node.token_hash = None
    node.revoked_at = timezone.now()
    node.save(update_fields=["token_hash", "revoked_at"])


def node_for(token: str) -> "RemoteNode | None":
    """The node holding this token, or None when it is unknown or revoked."""
    from defender.models import RemoteNode

    if not token or not token.startswith(PREFIX):
        return None
    return RemoteNode.objects.filter(token_hash=token_hash(token)).first()
