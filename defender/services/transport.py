"""The one module that imports requests: one request at a time with the settings' trust, road and timeouts, its
body read here within a deadline and a size limit, redirects never followed.

One requests session (one connection pool) per settings is kept while the process lives. trust_env is off: the
environment's CA bundle would override our verify, .netrc could replace our Authorization header, and the
environment's proxies are chosen by the route module, the same way for the calls and the Tests.
"""

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from defender.services import failures
from defender.services.connection import Reach, target
from defender.services.errors import BadResponse, ConnectionFailed, DefenderError, socks_credentials_failure
from defender.services.failures import Kind
from defender.services.process import PROCESS, Kept
from defender.services.route import Route, route_for
from defender.services.trust import trust_for

logger = logging.getLogger(__name__)

# One response, from sending the request to the last byte of the body, must be complete within the connect timeout
# plus this many read timeouts. Each single read still waits at most the read timeout, and never past that deadline,
# so a server that sends a byte now and then cannot hold a call for ever. With the default timeouts (5 s and 30 s)
# that is 65 s; a page of 10,000 alerts (about 25 MB) takes well under a second over a local network.
RESPONSE_READ_TIMEOUTS = 2
# The largest body we read (after decompression): ten times the largest page of alerts the APIs send.
MAX_BODY_BYTES = 200 * 2**20
# The most a compressed body may expand to: twice the largest page of alerts (10,000 alerts with their evidence,
# about 30 MB). A few kilobytes of gzip can expand a thousandfold, so without this a hostile server (or proxy) could
# make each ask hold the whole body cap for the price of a small answer.
MAX_DECODED_BYTES = 64 * 2**20
# How much one read of the body may return; urllib3 decompresses no more than this per read.
BODY_CHUNK = 1 << 20

Response = requests.Response
Params = Mapping[str, Any] | None

_sessions: Kept[Reach, requests.Session] = PROCESS.keep(64)


def _new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class Transport:
    """One request at a time; failures become DefenderErrors naming the hop that failed.

    It also serves as msal's ``http_client`` (get/post returning requests responses), so token calls take the same
    road as API calls: same CA bundle, same proxy, same timeouts.
    """

    def __init__(self, settings: Reach) -> None:
        self.settings = settings
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.verify = trust_for(settings)
        self.session = _sessions.get(settings, _new_session)

    def send(
        self,
        method: str,
        url: str,
        *,
        params: Params = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        url_is_secret: bool = False,
    ) -> Response:
        """One request, redirects not followed; the body is read here, within the response deadline and size limit.
        ``url_is_secret`` (a webhook's URL is its credential): the debug log names the host only, not the path.

        A 3xx fails: following it would re-send the Authorization header or the client secret to wherever the
        Location points. The returned response has its body in place, so ``.content``, ``.text`` and ``.json()``
        work as usual (msal reads them).
        """
        started = time.monotonic()
        deadline = started + self.settings.connect_timeout + RESPONSE_READ_TIMEOUTS * self.settings.read_timeout
        route = route_for(self.settings, url)
        failure = socks_credentials_failure(route.proxy)
        if failure is not None:
            raise failure
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers={"User-Agent": PROCESS.user_agent, **(headers or {})},
                timeout=self.timeout,
                verify=self.verify,
                proxies=route.proxies(),
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise self._translate(exc, url, route) from None
        try:
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                raise failures.redirect_failure(response.status_code, location, url, self.settings)
            self._read_body(response, url, deadline, route)
        finally:
            response.close()
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method,
            target(url) if url_is_secret else urlsplit(url).path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _read_body(self, response: Response, url: str, deadline: float, route: Route) -> None:
        """Read the whole body into the response, or raise: too slow in total, too large, or broken off."""
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large(url)
        read_timeout = self.settings.read_timeout
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        limit = min(MAX_BODY_BYTES, MAX_DECODED_BYTES) if encoding not in ("", "identity") else MAX_BODY_BYTES
        chunks: list[bytes] = []
        size = 0
        while True:
            # Never wait past the deadline; at the deadline, take only what has already arrived. The socket is
            # looked up each time: once the body is complete, urllib3 returns the connection to the pool, and its
            # socket is then no longer ours to change.
            wait = min(read_timeout, max(deadline - time.monotonic(), 0.001))
            sock = _socket_of(response)
            if sock is not None:
                try:
                    sock.settimeout(wait)
                except OSError:
                    sock = None
            try:
                chunk = response.raw.read1(BODY_CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                if wait < read_timeout:
                    raise self._too_slow(url, size) from None
                raise ConnectionFailed(
                    f"{target(url)} began its answer, then sent nothing for {read_timeout:g} s (read timeout).",
                    "Try again; raise the read timeout in Advanced options if it persists.",
                ) from None
            except urllib3.exceptions.DecodeError:
                raise BadResponse(
                    f"The answer from {target(url)} could not be decompressed ({encoding[:40]}).",
                    "The service or a proxy sent a broken answer; try again.",
                ) from None
            except urllib3.exceptions.ProtocolError as exc:
                chain = failures.causes(exc)
                why = "the connection closed" if failures.mentions(chain, "IncompleteRead") else failures.reason(chain)
                raise ConnectionFailed(
                    f"{target(url)} broke off its answer after {size:,} bytes ({why}).",
                    "Try again; check any proxy or firewall between this site and the service if it persists.",
                ) from None
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise self._translate(exc, url, route) from None
            if not chunk:
                break
            if sock is None and time.monotonic() > deadline:
                raise self._too_slow(url, size)
            size += len(chunk)
            if size > limit:
                # Decompression stops here: urllib3 inflates one chunk per read, and no further read is made.
                raise _too_large(url) if limit == MAX_BODY_BYTES else _inflates_too_far(url, encoding)
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag, untyped

    def _too_slow(self, url: str, size: int) -> ConnectionFailed:
        bound = self.settings.connect_timeout + RESPONSE_READ_TIMEOUTS * self.settings.read_timeout
        received = f"; {size:,} bytes of the body had arrived" if size else ""
        return ConnectionFailed(
            f"{target(url)} did not complete its answer within {bound:g} s (the connect timeout plus "
            f"{RESPONSE_READ_TIMEOUTS} × the read timeout){received}.",
            "The service answers too slowly: try again, lower the page size, or raise the read timeout in Advanced "
            "options.",
        )

    def _translate(self, exc: BaseException, url: str, route: Route) -> DefenderError:
        return failures.translate(exc, _kind(exc), url, self.settings, route)

    # msal's http_client interface. msal passes nothing else we honour: the settings always win.
    def get(self, url: str, params: Params = None, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Response:
        return self.send("GET", url, params=params, headers=headers)

    def post(
        self,
        url: str,
        params: Params = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        return self.send("POST", url, params=params, data=data, headers=headers)

    def close(self) -> None:
        """msal may close its http client; the session is shared, so it stays open."""


def _kind(exc: BaseException) -> Kind:
    """How requests classed the failure (it knows which of urllib3's reasons means what)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Kind.CONNECT_TIMEOUT
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Kind.READ_TIMEOUT
    if isinstance(exc, requests.exceptions.Timeout):
        return Kind.TIMEOUT
    if isinstance(exc, requests.exceptions.SSLError):
        return Kind.TLS
    if isinstance(exc, requests.exceptions.ProxyError):
        return Kind.PROXY
    return Kind.OTHER


def _too_large(url: str) -> BadResponse:
    return BadResponse(
        f"The answer from {target(url)} is larger than {MAX_BODY_BYTES // 2**20} MB; not read.",
        "Lower the page size in Advanced options.",
    )


def _inflates_too_far(url: str, encoding: str) -> BadResponse:
    return BadResponse(
        f"The compressed answer from {target(url)} ({encoding[:40]}) expands to more than "
        f"{MAX_DECODED_BYTES // 2**20} MB; decompression stopped there, not read.",
        "No page of alerts is that large; if the service really sends one, lower the page size in Advanced options.",
    )


def _socket_of(response: Response) -> socket.socket | None:
    """The socket a streamed response is read from, so each read can be bounded by the deadline; None if hidden."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if callable(getattr(sock, "settimeout", None)) else None


def requested_url(url: str, params: Params) -> str:
    """The URL as it is requested, with its query in requests' encoding, so links compare whatever their spelling."""
    request = requests.models.PreparedRequest()
    try:
        request.prepare_url(url, params)
    except requests.RequestException:
        return url
    return request.url or url
