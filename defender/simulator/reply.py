"""What a simulated endpoint hands back to the HTTPS layer, and the request it was asked."""

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str  # URL-decoded, as sent
    query: str  # raw query string
    params: dict  # last value wins, like the real services
    multi_params: list  # every (name, value) pair, for options that repeat
    headers: object  # email.message.Message: case-insensitive
    body: bytes
    client: tuple  # (host, port)
    origin: str  # https://host:port as the client addressed it

    @property
    def form(self):
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    def json(self):
        return json.loads(self.body or b"{}")

    @property
    def correlation_id(self):
        """The client's request id when it sent one (msal and Graph clients do), as the services echo it."""
        return self.headers.get("client-request-id") or str(uuid.uuid4())


@dataclass
class Reply:
    status: int
    body: object = None  # JSON-ready value, or str for a text body
    headers: dict = field(default_factory=dict)
    page: int = 0  # which page of a paged collection this is (1-based), 0 when not paged
    malformed: bool = False

    def encode(self):
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        text = json.dumps(self.body, separators=(",", ":"))
        if self.malformed:
            # Cut the document in half: what a proxy or a broken gateway hands over when a response is truncated.
            text = text[: max(1, len(text) // 2)]
        return text.encode(), "application/json; charset=utf-8"


def utc_now():
    return datetime.now(UTC)
