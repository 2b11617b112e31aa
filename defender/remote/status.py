"""Whether a remote node is online: it checked in within twice its poll interval."""

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from django.utils import timezone

if TYPE_CHECKING:
    from defender.models import RemoteNode


class NodeStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    NEVER = "never"
    REVOKED = "revoked"


ONLINE, OFFLINE, NEVER, REVOKED = NodeStatus.ONLINE, NodeStatus.OFFLINE, NodeStatus.NEVER, NodeStatus.REVOKED


def node_status(node: "RemoteNode", now: datetime | None = None) -> NodeStatus:
    if not node.token_hash:
        return REVOKED
    if node.last_seen_at is None:
        return NEVER
    now = now or timezone.now()
    return ONLINE if now - node.last_seen_at <= timedelta(seconds=2 * node.poll_interval_seconds) else OFFLINE
