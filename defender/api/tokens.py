"""Per-user API tokens: 256 random bits, shown once; only their SHA-256 is stored."""

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from defender.models import ApiToken

PREFIX = "da1_"
# last_used_at is written at most this often per token, not on every call.
USE_RECORDED_EVERY = timedelta(minutes=1)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user, name: str) -> tuple[ApiToken, str]:
    """A new token for the user; the second value is the token itself, which cannot be read back later."""
    token = PREFIX + secrets.token_urlsafe(32)
    record = ApiToken.objects.create(user=user, name=name[:100], key_hash=token_hash(token), hint=token[:10])
    return record, token


def revoke(record: ApiToken) -> None:
    if record.revoked_at is None:
        record.revoked_at = timezone.now()
        record.save(update_fields=["revoked_at"])


def holder(token: str) -> ApiToken | None:
    """The active token record of this token (with its user), or None when unknown, revoked or its user inactive."""
    if not token.startswith(PREFIX) or len(token) > 100:
        return None
    record = ApiToken.objects.select_related("user").filter(key_hash=token_hash(token), revoked_at=None).first()
    if record is None or not record.user.is_active:
        return None
    now = timezone.now()
    if record.last_used_at is None or now - record.last_used_at >= USE_RECORDED_EVERY:
        ApiToken.objects.filter(pk=record.pk).update(last_used_at=now)
        record.last_used_at = now
    return record
