"""Authenticated GETs against one integration's API: retries on 429/5xx with Retry-After, one re-authentication on
401, paging, and the API's error answers in words a person can act on. Requests go through transport.Transport,
each after taking a slot of the app and tenant's call budget (budget.py); a 429 pauses that budget for everyone."""

import contextvars
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3

from defender.services import budget
from defender.services.connection import API_NAMES, ConnectionSettings, origin
from defender.services.errors import (
    ApiFailed,
    BadResponse,
    NotFound,
    PermissionMissing,
    Throttled,
    permission_advice,
    redact,
)
from defender.services.transport import Params, Response, Transport, requested_url

logger = logging.getLogger(__name__)

# The longest we sleep for retries during one call, all attempts together. A caller waits at a button or in a job;
# a Retry-After beyond this fails at once with the time to try again.
MAX_TOTAL_WAIT = 60.0
# The first back-off for a 5xx without Retry-After; doubled on each further attempt.
FIRST_BACKOFF = 0.5
# A Retry-After beyond a day is treated as a day: the message only needs to say "try again later".
MAX_RETRY_AFTER = 86400.0

# The most pages one listing may take. A listing of more (a million alerts at the default page size of 1,000, or an
# API that keeps sending full pages and ignores $skip) fails with a message instead of running on.
MAX_PAGES = 1000


class Tokens(Protocol):
    """Where bearer tokens come from: auth.TokenSource."""

    def token(self) -> str: ...

    def drop(self) -> None: ...


# urllib3's parser of Retry-After (seconds or an HTTP date), capped at a day; nothing else of this Retry is used.
_RETRY_AFTER = urllib3.util.Retry(total=0, retry_after_max=int(MAX_RETRY_AFTER))


def retry_after_seconds(response: Response) -> float | None:
    """Retry-After as seconds to wait: it may be a number of seconds or an HTTP date. None when absent or unusable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(_RETRY_AFTER.parse_retry_after(value))
    except (urllib3.exceptions.InvalidHeader, OverflowError, ValueError):
        return None


def api_error_detail(response: Response, *secrets: str) -> str:
    """'code: message' from the API's error body ({"error": {"code", "message"}}), or the first line of a plain-text
    body (the SIEM exporter's errors are not documented as OData JSON), redacted and kept short."""
    try:
        error = json.loads(response.content).get("error") or {}
    except ValueError:
        return _text_detail(response, *secrets)
    except AttributeError:
        return ""
    if not isinstance(error, dict):
        return ""
    detail = ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
    return redact(detail, *secrets)[:300]


def _text_detail(response: Response, *secrets: str) -> str:
    """The first line of a text/plain error body, printable characters only; HTML pages and other bodies say nothing
    a person could act on, so they give no detail."""
    headers = getattr(response, "headers", None) or {}
    if not str(headers.get("Content-Type", "")).lower().startswith("text/plain"):
        return ""
    text = response.content.decode("utf-8", "replace").strip()
    line = "".join(char for char in text.partition("\n")[0] if char.isprintable()).strip()
    return redact(line, *secrets)[:300]


class ApiClient:
    """Authenticated GETs against one integration's API, with retries, re-authentication and paging.

    ``tokens`` is anything with ``token()`` (a bearer token string) and ``drop()`` (forget it); auth.TokenSource.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        tokens: Tokens,
        sleep: Callable[[float], None] = time.sleep,
        call_budget: budget.Budget | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.transport = Transport(settings)
        self.api_name = API_NAMES[settings.flavour]
        self.sleep = sleep
        # The integration's API budget unless the calls have one of their own (advanced hunting's).
        self.budget = call_budget or budget.budget_for(settings)
        # Every request sent, retries included: what the API counts against the tenant's budget.
        self.calls = 0

    def url(self, path: str) -> str:
        return self.settings.base_url + path

    def get(self, url: str, params: Params = None, headers: Mapping[str, str] | None = None) -> Response:
        """One GET with the retry rules; returns the successful response or raises an ApiFailed subclass. ``headers``
        are sent beside Authorization and Accept (Graph's Prefer, for one)."""
        return self._call("GET", url, params=params, headers=headers)

    def post_json(self, url: str, body: Mapping[str, Any]) -> Response:
        """One POST of a JSON body (an advanced-hunting query: it reads, so a retry is as safe as a GET's), with the
        same budget, retries and errors as ``get``."""
        data = json.dumps(body).encode()
        return self._call("POST", url, headers={"Content-Type": "application/json"}, data=data)

    def _call(
        self, method: str, url: str, params: Params = None, headers: Mapping[str, str] | None = None, data: Any = None
    ) -> Response:
        path = urlsplit(url).path
        reauthenticated = False
        attempts = 0
        waited = 0.0
        while True:
            token = self.tokens.token()
            # The slot is taken after the token: a token request is not an API call.
            budget.take(self.budget)
            self.calls += 1
            response = self.transport.send(
                method,
                url,
                params=params,
                data=data,
                headers={**(headers or {}), "Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            status = response.status_code
            if status < 400:
                return response
            if status == 401 and not reauthenticated:
                # The token may have been revoked or rotated server-side: one fresh token, one more try.
                logger.info("%s answered 401 on %s; getting a new token", self.api_name, path)
                self.tokens.drop()
                reauthenticated = True
                continue
            if status == 429:
                # Every worker calling with this app and tenant waits, not only this one.
                pause = retry_after_seconds(response)
                budget.pause(self.budget, pause if pause is not None else FIRST_BACKOFF * 2**attempts)
            if (status == 429 or status >= 500) and attempts < self.settings.max_retries:
                delay = retry_after_seconds(response)
                if delay is None:
                    delay = FIRST_BACKOFF * 2**attempts
                elif delay > MAX_TOTAL_WAIT - waited:
                    raise self._throttled(response, delay)
                delay = min(delay, MAX_TOTAL_WAIT - waited)
                logger.info("%s answered %s on %s; retrying in %.1f s", self.api_name, status, path, delay)
                if status != 429:
                    # After a 429 the budget's pause is the wait: the next take() waits it out.
                    self.sleep(delay)
                waited += delay
                attempts += 1
                continue
            raise self._failure(response, path, attempts, token)

    def _throttled(self, response: Response, delay: float) -> Throttled:
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        return Throttled(
            f"{self.api_name} is throttling this integration (HTTP {response.status_code}); "
            f"try again after {retry_at:%H:%M:%S} UTC.",
            "The API allows about 100 calls a minute and 1,500 an hour per tenant.",
            code=response.status_code,
            retry_at=retry_at,
        )

    def _failure(self, response: Response, path: str, attempts: int, token: str) -> ApiFailed:
        status = response.status_code
        detail = api_error_detail(response, token, self.settings.client_secret)
        detail_text = f" ({detail})" if detail else ""
        if status == 401:
            return ApiFailed(
                f"{self.api_name} rejected the token on {path} (401 Unauthorized), also after getting a new one"
                f"{detail_text}.",
                "Check that the resource matches the API host and that the app belongs to this tenant.",
                code=status,
            )
        if status == 403:
            return PermissionMissing(
                f"{self.api_name} refused the call to {path} (403 Forbidden){detail_text}.",
                permission_advice(self.settings.flavour),
                code=status,
            )
        if status == 404:
            return NotFound(f"{self.api_name} found nothing at {path} (404){detail_text}.", code=status)
        if status == 429:
            delay = retry_after_seconds(response)
            return self._throttled(response, delay if delay is not None else 60)
        tries = f" after {attempts + 1} attempts" if attempts else ""
        if status >= 500:
            return ApiFailed(
                f"{self.api_name} failed with HTTP {status} on {path}{tries}{detail_text}.",
                "The service had a problem on its side; try again later.",
                code=status,
            )
        return ApiFailed(f"{self.api_name} answered HTTP {status} to {path}{detail_text}.", code=status)

    def get_json(self, url: str, params: Params = None, page: int = 1, headers: Mapping[str, str] | None = None) -> Any:
        response = self.get(url, params, headers)
        try:
            return json.loads(response.content)
        except ValueError:
            raise BadResponse(
                f"Page {page} of {urlsplit(url).path} was not valid JSON; no partial result shown.",
                "The service sent a broken answer; try again, or lower the page size if a proxy cuts large answers.",
            ) from None
        except RecursionError:
            # Python's parser recurses once per level: no API nests hundreds of levels deep.
            raise BadResponse(
                f"Page {page} of {urlsplit(url).path} nests arrays or objects too deeply to read; no partial result "
                "shown.",
                "The service sent an answer no documented API sends; check the Host.",
            ) from None

    def iter_items(
        self,
        path: str,
        params: Params = None,
        page_size: int | None = None,
        headers: Mapping[str, str] | None = None,
        read_ahead: bool = False,
    ) -> Iterator[Any]:
        """Yield the items of a list endpoint page by page, never holding more than two pages.

        Follows @odata.nextLink; where the link is missing but a full page came back (the Defender API omits it
        when $top is given), asks for the next page with $skip. A bare JSON array (the SIEM API) is one page.
        A link to a page already read, or more than MAX_PAGES pages, fails rather than looping.

        With ``read_ahead`` the next page is asked for while the caller reads this one, so Defender's time to
        answer overlaps the caller's time to read. Only for a caller that reads every page: when it stops early,
        the page being fetched is still one call of the budget. The caller must not use this client meanwhile.
        """
        first_url = self.url(path)
        base_params: dict[str, Any] = dict(params or {})
        if page_size:
            base_params["$top"] = page_size
        followed = {requested_url(first_url, base_params)}
        received = 0
        page = 1
        previous_first: object = None
        reader = ReadAhead(self.get_json) if read_ahead else _ReadOnDemand(self.get_json)
        try:
            reader.ask(first_url, base_params, page, headers)
            while True:
                data = reader.answer()
                if isinstance(data, list):
                    yield from data
                    return
                items = data.get("value") if isinstance(data, dict) else None
                if not isinstance(items, list):
                    raise BadResponse(f"Page {page} of {path} had no list of results; no partial result shown.")
                if items and page > 1 and items[0] == previous_first:
                    raise BadResponse(f"{self.api_name} sent page {page} of {path} twice: it ignores $skip.")
                previous_first = items[0] if items else None
                received += len(items)
                stop: Exception | None = None
                next_link = data.get("@odata.nextLink")
                if next_link:
                    url, query = self._own_link(next_link, path, page), None
                    if requested_url(url, None) in followed:
                        stop = BadResponse(
                            f"{self.api_name} repeated a page of {path}: the link on page {page} leads to a page "
                            "already read; stopped there, no partial result shown.",
                            "The service is paging wrongly; try again later, or with a different page size.",
                        )
                    followed.add(requested_url(url, None))
                elif page_size and len(items) >= page_size:
                    url, query = first_url, {**base_params, "$skip": received}
                else:
                    yield from items
                    return
                if stop is None and page >= MAX_PAGES:
                    stop = ApiFailed(
                        f"{self.api_name} had more than {MAX_PAGES:,} pages of {path} ({received:,} results so far); "
                        "stopped there, no partial result shown.",
                        "Ask for a shorter time window, or raise the page size in Advanced options.",
                    )
                if stop is None:
                    reader.ask(url, query, page + 1, headers)
                yield from items
                if stop is not None:
                    raise stop
                page += 1
        finally:
            reader.close()

    def _own_link(self, link: object, path: str, page: int) -> str:
        """A next link must stay on the API's own origin: the bearer token goes with it."""
        try:
            same = isinstance(link, str) and origin(link) == origin(self.settings.base_url)
        except ValueError:
            raise BadResponse(
                f"Page {page} of {path} had a next link that is not a valid URL; not followed.",
                "The service sent a broken answer; try again.",
            ) from None
        if not same or not isinstance(link, str):
            other = urlsplit(link).hostname if isinstance(link, str) else None
            raise BadResponse(f"Page {page} of {path} linked to another host ({other}); not followed.")
        return link


class _ReadOnDemand:
    """Each page asked for when the caller wants it."""

    def __init__(self, get_json: Callable[..., Any]) -> None:
        self._get_json = get_json
        self._asked: tuple[Any, ...] = ()

    def ask(self, *request: Any) -> None:
        self._asked = request

    def answer(self) -> Any:
        return self._get_json(*self._asked)

    def close(self) -> None:
        pass


class ReadAhead:
    """Each page fetched from the moment it is asked for, on one thread kept for the listing, with the caller's
    context (its call-budget priority); its failure is raised to the caller when it wants the page. ``close`` waits
    for a page still in flight. Used by ``iter_items`` and by the sweeps."""

    def __init__(self, get_json: Callable[..., Any]) -> None:
        self._get_json = get_json
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
        self._pending: Future[Any] | None = None

    def ask(self, *request: Any) -> None:
        self._pending = self._pool.submit(contextvars.copy_context().run, self._get_json, *request)

    def answer(self) -> Any:
        assert self._pending is not None
        pending, self._pending = self._pending, None
        return pending.result()

    def close(self) -> None:
        # A page still in flight is waited for (each call has its timeouts): the client is the caller's again after.
        self._pool.shutdown(wait=True)
