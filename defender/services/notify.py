"""A health notification sent to a webhook: one JSON POST through the one HTTP seam, within a timeout.

The body keeps to what Slack and Microsoft Teams incoming webhooks show (``text``), plus fields a script can read.
The webhook URL is its own credential (whoever has it can post to the channel): it never appears in a message, an
error or a log line of this module; failures name the webhook's host at most.
"""

import json
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from defender.services.connection import ProxySettings, url_hostname
from defender.services.errors import DefenderError
from defender.services.transport import Transport


@dataclass(frozen=True)
class Notice:
    """What a notification says. ``state`` is "down" or "up"; ``failed_step`` and ``advice`` are empty for "up"."""

    text: str
    integration: str
    state: str
    failed_step: str
    advice: str
    url: str

    def body(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class WebhookReach:
    """How the webhook is reached: the system's CA bundle, the environment's proxy (as every call without a proxy rule
    takes), and short timeouts: a notification must not hold a worker."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    verify_tls: bool = True
    ca_certificate: str = ""
    proxy: ProxySettings | None = None

    def answered_by(self, url: str) -> tuple[str, str]:
        return "The webhook", "Check the webhook URL in the integration's Operational status."


class NotificationFailed(Exception):
    """The webhook could not be reached or refused the notification; the message never holds the URL."""


def post_webhook(url: str, notice: Notice, reach: WebhookReach | None = None) -> None:
    """POST the notice as JSON; raises NotificationFailed unless the webhook answers 2xx."""
    data = json.dumps(notice.body()).encode()
    headers = {"Content-Type": "application/json"}
    try:
        response = Transport(reach or WebhookReach()).send("POST", url, data=data, headers=headers, url_is_secret=True)
    except DefenderError as error:
        raise NotificationFailed(_without(str(error), url)) from None
    except Exception as error:  # a URL requests cannot even parse, say: its text would carry the URL
        raise NotificationFailed(f"The webhook could not be called ({type(error).__name__}).") from None
    if not 200 <= response.status_code < 300:
        host = url_hostname(url) or "the webhook"
        raise NotificationFailed(f"{host} answered HTTP {response.status_code} to the notification.")


def _without(message: str, url: str) -> str:
    """The message with the URL taken out, should a lower layer ever quote it (the path and query are the secret)."""
    try:
        path = urlsplit(url).path
    except ValueError:
        path = ""
    for part in (url, url.split("?", 1)[0], url.split("://", 1)[-1], path):
        if len(part) > 1:
            message = message.replace(part, "[webhook URL]")
    return message
