"""Whether a remote node is online: it checked in within twice its poll interval."""

from datetime import timedelta

from django.utils import timezone

ONLINE, OFFLINE, NEVER, REVOKED = "online", "offline", "never", "revoked"


def node_status(node, now=None):
    if not node.token_hash:
        return REVOKED
    if node.last_seen_at is None:
        return NEVER
    now = now or timezone.now()
    return ONLINE if now - node.last_seen_at <= timedelta(seconds=2 * node.poll_interval_seconds) else OFFLINE
