"""The one HTTP seam: every request to Entra ID, Defender, Graph or the SIEM exporter goes through here.

Here, once: the requests session per integration, the TLS trust bundle, the proxy rule, timeouts, retries on 429/5xx
with Retry-After, one re-authentication on 401, paging, and the translation of low-level failures into errors a
person can act on. No other module imports requests.
"""

import email.utils
import hashlib
import http
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import requests
import socks
import urllib3
from requests.adapters import HTTPAdapter

from defender import presets
from defender.services.connection import url_host
from defender.services.errors import (
    ApiFailed,
    BadResponse,
    ConnectionFailed,
    NotFound,
    PermissionMissing,
    ProxyFailed,
    Throttled,
    TlsFailed,
    permission_advice,
    redact,
    socks_credentials_failure,
)

logger = logging.getLogger(__name__)

# The longest we sleep for retries during one call, all attempts together. A caller waits at a button or in a job;
# a Retry-After beyond this fails at once with the time to try again.
MAX_TOTAL_WAIT = 60.0
# The first back-off for a 5xx without Retry-After; doubled on each further attempt.
FIRST_BACKOFF = 0.5
# A Retry-After beyond a day is treated as a day: the message only needs to say "try again later".
MAX_RETRY_AFTER = 86400.0

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

# The most pages one listing may take. A listing of more (a million alerts at the default page size of 1,000, or an
# API that keeps sending full pages and ignores $skip) fails with a message instead of running on.
MAX_PAGES = 1000

# Sent on every request so that Microsoft (and a proxy's log) can tell this product's calls, and which side made
# them: the site, or a remote node (whose agent calls identify_as at start).
USER_AGENT = "defender-atp-director/1.0 (site)"


def identify_as(user_agent):
    global USER_AGENT
    USER_AGENT = user_agent


API_NAMES = {presets.MDE: "Defender", presets.GRAPH: "Microsoft Graph", presets.SIEM: "The SIEM API"}


# --- TLS trust ----------------------------------------------------------------------------------------------------


def system_bundle():
    """The trust store requests would use: REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE, else OpenSSL's, else
    certifi's."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(variable)
        if path and os.path.isfile(path):
            return path
    openssl_default = ssl.get_default_verify_paths().cafile
    if openssl_default and os.path.isfile(openssl_default):
        return openssl_default
    return requests.certs.where()


_bundle_lock = threading.Lock()
_bundle_dir = None
_bundles = {}


def trust_for(settings):
    """The ``verify=`` value for this integration: False when verification is off; the system bundle when no CA is
    configured; otherwise a private file holding the system bundle plus the integration's and the proxy's CA PEMs.

    The combined file is named by the hash of what it holds, written once per process and then reused.
    """
    if not settings.verify_tls:
        return False
    extra = [pem.strip() for pem in (settings.ca_certificate, settings.proxy.ca_certificate if settings.proxy else "")]
    extra = [pem for pem in extra if pem]
    base = system_bundle()
    if not extra:
        return base
    digest = hashlib.sha256("\0".join([base, *extra]).encode()).hexdigest()
    with _bundle_lock:
        path = _bundles.get(digest)
        if path and os.path.exists(path):
            return path
        path = _write_bundle(digest, base, extra)
        _bundles[digest] = path
        return path


def _write_bundle(digest, base, extra):
    global _bundle_dir
    if _bundle_dir is None or not os.path.isdir(_bundle_dir):
        _bundle_dir = tempfile.mkdtemp(prefix="defender-trust-")  # mode 0700
    with open(base, encoding="utf-8", errors="replace") as system_file:
        content = system_file.read().rstrip() + "\n" + "\n".join(extra) + "\n"
    path = os.path.join(_bundle_dir, f"{digest}.pem")
    fd, temporary = tempfile.mkstemp(dir=_bundle_dir, suffix=".tmp")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
    os.replace(temporary, path)
    return path


def certificate_failure(host, verify_code, verify_message, issuer=""):
    """A TlsFailed naming whose certificate failed and why, from OpenSSL's verify code."""
    by = f" (issuer: {issuer})" if issuer else ""
    fix = (
        "Set the CA certificate in Advanced options (or the proxy's CA in the proxy rule, for a TLS-inspecting "
        "proxy), or fix the site's trust store."
    )
    if verify_code in (2, 19, 20):  # unable to get issuer certificate / self-signed in chain / no local issuer
        return TlsFailed(f"The certificate for {host} is signed by an unknown CA{by}.", fix, code=verify_code)
    if verify_code == 18:
        return TlsFailed(f"The certificate for {host} is self-signed{by}.", fix, code=verify_code)
    if verify_code == 10:
        return TlsFailed(
            f"The certificate for {host} has expired{by}.",
            "The server must renew it; check the site's clock too.",
            code=verify_code,
        )
    if verify_code == 9:
        return TlsFailed(
            f"The certificate for {host} is not valid yet{by}.", "Check the site's clock.", code=verify_code
        )
    if verify_code in (62, 63, 64):  # host name, e-mail or IP address mismatch: another CA would not help
        return TlsFailed(
            f"The certificate presented by {host} is not valid for that name ({verify_message.rstrip('.')}){by}.",
            "Check the host name: it must match a name in the server's certificate.",
            code=verify_code,
        )
    return TlsFailed(
        f"The certificate for {host} failed verification: {verify_message.rstrip('.')}{by}.", fix, code=verify_code
    )


# --- sessions and transport ---------------------------------------------------------------------------------------

_session_lock = threading.Lock()
_sessions = OrderedDict()
MAX_SESSIONS = 64


def _session_for(settings):
    """One requests session (one connection pool) per integration and proxy, kept while the process lives.

    trust_env is off: the environment's CA bundle would override our verify, .netrc could replace our Authorization
    header, and environment proxies are applied by Transport only when no proxy rule is assigned.
    """
    key = (settings.integration_id, settings.name, settings.protocol, settings.host, settings.port, settings.proxy)
    with _session_lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
        session = requests.Session()
        session.trust_env = False
        session.headers["User-Agent"] = USER_AGENT
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        _sessions[key] = session
        while len(_sessions) > MAX_SESSIONS:
            _sessions.popitem(last=False)
        return session


class Transport:
    """One request at a time with the integration's trust, proxy and timeouts; failures become DefenderErrors.

    It also serves as msal's ``http_client`` (get/post returning requests responses), so token calls take the same
    road as API calls: same CA bundle, same proxy, same timeouts.
    """

    def __init__(self, settings):
        self.settings = settings
        self.timeout = (settings.connect_timeout, settings.read_timeout)
        self.verify = trust_for(settings)
        self.session = _session_for(settings)

    def proxies_for(self, url):
        """The proxy rule unless the host is on its bypass list; without a rule, the environment's proxies."""
        proxy = self.settings.proxy
        if proxy is None:
            return requests.utils.get_environ_proxies(url)
        if proxy.bypasses(urlsplit(url).hostname or ""):
            return {}
        proxy_url = proxy.url()
        return {"http": proxy_url, "https": proxy_url}

    def send(self, method, url, *, params=None, data=None, headers=None):
        """One request, redirects not followed; the body is read here, within the response deadline and size limit.

        A 3xx fails: following it would re-send the Authorization header or the client secret to wherever the
        Location points. The returned response has its body in place, so ``.content``, ``.text`` and ``.json()``
        work as usual (msal reads them).
        """
        started = time.monotonic()
        deadline = started + self.settings.connect_timeout + RESPONSE_READ_TIMEOUTS * self.settings.read_timeout
        proxies = self.proxies_for(url)
        if proxies:
            failure = socks_credentials_failure(self.settings.proxy)
            if failure is not None:
                raise failure
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                proxies=proxies,
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            raise self.translate(exc, url) from None
        try:
            if 300 <= response.status_code < 400:
                raise self.redirect_failure(response, url)
            self._read_body(response, url, deadline)
        finally:
            response.close()
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method,
            urlsplit(url).path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _read_body(self, response, url, deadline):
        """Read the whole body into the response, or raise: too slow in total, too large, or broken off."""
        target = _target(url)
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise _too_large(target)
        read_timeout = self.settings.read_timeout
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        limit = min(MAX_BODY_BYTES, MAX_DECODED_BYTES) if encoding not in ("", "identity") else MAX_BODY_BYTES
        chunks, size = [], 0
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
                    raise self._too_slow(target, size) from None
                raise ConnectionFailed(
                    f"{target} began its answer, then sent nothing for {read_timeout:g} s (read timeout).",
                    "Try again; raise the read timeout in Advanced options if it persists.",
                ) from None
            except urllib3.exceptions.DecodeError:
                raise BadResponse(
                    f"The answer from {target} could not be decompressed ({encoding[:40]}).",
                    "The service or a proxy sent a broken answer; try again.",
                ) from None
            except urllib3.exceptions.ProtocolError as exc:
                chain = _causes(exc)
                why = "the connection closed" if _mentions(chain, "IncompleteRead") else _reason(chain)
                raise ConnectionFailed(
                    f"{target} broke off its answer after {size:,} bytes ({why}).",
                    "Try again; check any proxy or firewall between this site and the service if it persists.",
                ) from None
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise self.translate(exc, url) from None
            if not chunk:
                break
            if sock is None and time.monotonic() > deadline:
                raise self._too_slow(target, size)
            size += len(chunk)
            if size > limit:
                # Decompression stops here: urllib3 inflates one chunk per read, and no further read is made.
                raise _too_large(target) if limit == MAX_BODY_BYTES else _inflates_too_far(target, encoding)
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True

    def _too_slow(self, target, size):
        bound = self.settings.connect_timeout + RESPONSE_READ_TIMEOUTS * self.settings.read_timeout
        received = f"; {size:,} bytes of the body had arrived" if size else ""
        return ConnectionFailed(
            f"{target} did not complete its answer within {bound:g} s (the connect timeout plus "
            f"{RESPONSE_READ_TIMEOUTS} × the read timeout){received}.",
            "The service answers too slowly: try again, lower the page size, or raise the read timeout in Advanced "
            "options.",
        )

    def redirect_failure(self, response, url):
        """A 3xx as an error that says where it pointed and which setting to check."""
        status = response.status_code
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "a redirect status"
        location = response.headers.get("Location", "").strip()
        if not location:
            where = "with no Location"
        else:
            try:
                goes_to = urlsplit(urljoin(url, location))
                same = _origin(urljoin(url, location)) == _origin(url)
                netloc = url_host(goes_to.hostname or "") + (f":{goes_to.port}" if goes_to.port else "")
            except ValueError:
                goes_to, same, netloc = None, False, ""
            if goes_to is None or not netloc:
                where = "a redirect to an address that is not a valid URL"
            elif same:
                where = f"a redirect to {goes_to.path[:100] or '/'} on the same host"
            else:
                where = f"a redirect to {goes_to.scheme}://{netloc}"
        who, advice = self._speaker(url)
        return BadResponse(
            f"{who} answered {status} {phrase}, {where}; this console does not follow redirects.",
            advice,
            code=status,
        )

    def _speaker(self, url):
        """Who answered url (Entra ID, the API, or just the host and port), and which setting to check."""
        target = _target(url)
        try:
            origin = _origin(url)
            to_auth = bool(self.settings.auth_url) and origin == _origin(self.settings.auth_url.strip())
            to_api = origin == _origin(self.settings.base_url)
        except ValueError:
            to_auth = to_api = False
        api = API_NAMES.get(self.settings.flavour)
        if to_auth and not to_api:
            return f"Entra ID at {target}", (
                "Check the Auth URL: it must be the sign-in host itself (such as https://login.microsoftonline.com), "
                "not an address that forwards to it."
            )
        if to_api and not to_auth and api:
            return f"{api} at {target}", (
                "Check the Host, Port and Protocol: they must be the API's own, not an address that forwards to it."
            )
        if to_api and to_auth:
            return target, "Check the Host and the Auth URL: each must be the service's own address, not a forward."
        return target, "Use the service's own address, not one that forwards to it."

    # msal's http_client interface. msal passes nothing else we honour: the integration's settings always win.
    def get(self, url, params=None, headers=None, **kwargs):
        return self.send("GET", url, params=params, headers=headers)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        return self.send("POST", url, params=params, data=data, headers=headers)

    def close(self):
        """msal may close its http client; the session is shared, so it stays open."""

    def translate(self, exc, url):
        """A requests exception as a ConnectionFailed/ProxyFailed/TlsFailed that says what to check."""
        host = _hostname(url)
        target = _target(url)
        chain = _causes(exc)
        verify_error = next((c for c in chain if isinstance(c, ssl.SSLCertVerificationError)), None)
        if verify_error is not None:
            return certificate_failure(host, verify_error.verify_code, verify_error.verify_message)
        proxy = self.settings.proxy if self.settings.proxy and self.proxies_for(url) else None
        failure = _proxy_failure(exc, chain, proxy, target) if proxy else None
        if failure is not None:
            return failure
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            via = f" through the proxy {proxy.address}" if proxy else ""
            return ConnectionFailed(
                f"No answer from {target}{via} within {self.settings.connect_timeout:g} s (connect timeout).",
                "Check the host, the port and any firewall between this site and the service.",
            )
        if isinstance(exc, requests.exceptions.Timeout) and _mentions(chain, "handshake"):
            # urllib3 bounds the handshake by the connect timeout but reports it as a read timeout.
            return TlsFailed(
                f"No TLS answer from {target} within {self.settings.connect_timeout:g} s: the port accepts "
                "connections but does not complete a TLS handshake.",
                "Check the port and protocol, and whether something between this site and the service holds "
                "connections.",
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return ConnectionFailed(
                f"{target} accepted the connection but did not answer within {self.settings.read_timeout:g} s "
                "(read timeout).",
                "Try again; raise the read timeout in Advanced options if it persists.",
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return TlsFailed(
                f"The TLS handshake with {target} failed: {_reason(chain)}.",
                "Check the port and protocol: the server must speak HTTPS there.",
            )
        if _has(chain, socket.gaierror):
            return ConnectionFailed(
                f"The name {host} could not be resolved (DNS).", "Check the host name and this site's DNS server."
            )
        if _has(chain, ConnectionRefusedError):
            return ConnectionFailed(
                f"Connection to {target} was refused: nothing listens on that port.", "Check the host and the port."
            )
        return ConnectionFailed(f"Could not talk to {target}: {_reason(chain)}.", "Check the host, port and proxy.")


def _proxy_failure(exc, chain, proxy, target):
    """What went wrong at the proxy (credentials, its refusal to tunnel, or reaching it at all), or None."""
    name = proxy.address
    if _has(chain, socks.SOCKS5AuthError) or _mentions(chain, "407 Proxy Authentication Required"):
        status = "" if proxy.proxy_type == "socks5" else " (407 Proxy Authentication Required)"
        return ProxyFailed(
            f"The proxy {name} rejected its credentials{status}.",
            "Check the username and password of the proxy rule.",
            code=407 if status else None,
        )
    refusal = next(
        (c for c in chain if isinstance(c, socks.SOCKS5Error) or str(c).startswith("Tunnel connection failed")), None
    )
    if refusal is not None:
        detail = refusal.msg if isinstance(refusal, socks.ProxyError) else str(refusal).split(": ", 1)[-1]
        return ProxyFailed(
            f"The proxy {name} could not open a tunnel to {target} ({detail}).",
            "Check that the proxy allows this destination and can reach it.",
        )
    if isinstance(exc, requests.exceptions.ProxyError) or _has(chain, socks.ProxyConnectionError):
        return ProxyFailed(
            f"Could not reach the proxy {name}: {_reason(chain)}.", "Check the proxy rule's host and port."
        )
    return None


def _hostname(url):
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _target(url):
    """host:port of a URL for messages, IPv6 in brackets; what there is of it when the URL is malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return url_host(_hostname(url)) or "the server"
    return f"{url_host(parts.hostname or '')}:{port}"


def _socket_of(response):
    """The socket a streamed response is read from, so each read can be bounded by the deadline; None if hidden."""
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if callable(getattr(sock, "settimeout", None)) else None


def _too_large(target):
    return BadResponse(
        f"The answer from {target} is larger than {MAX_BODY_BYTES // 2**20} MB; not read.",
        "Lower the page size in Advanced options.",
    )


def _inflates_too_far(target, encoding):
    return BadResponse(
        f"The compressed answer from {target} ({encoding[:40]}) expands to more than "
        f"{MAX_DECODED_BYTES // 2**20} MB; decompression stopped there, not read.",
        "No page of alerts is that large; if the service really sends one, lower the page size in Advanced options.",
    )


def _causes(exc):
    """The exception and everything it wraps (urllib3 nests its reasons in args, .reason and __context__)."""
    seen, stack, chain = set(), [exc], []
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        chain.append(current)
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        for attribute in ("reason", "socket_err", "__cause__", "__context__"):
            inner = getattr(current, attribute, None)
            if isinstance(inner, BaseException):
                stack.append(inner)
    return chain


def _has(chain, kind):
    return any(isinstance(item, kind) for item in chain)


def _mentions(chain, text):
    return any(text in str(item) for item in chain)


def _reason(chain):
    """The innermost plain reason (e.g. 'Connection reset by peer'), without URLs or credentials."""
    if _has(chain, TimeoutError):
        return "no answer in time"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    for item in reversed(chain):
        if isinstance(item, ssl.SSLError) and item.reason:
            return item.reason.replace("_", " ").lower()
    return type(chain[-1]).__name__


# --- API calls ----------------------------------------------------------------------------------------------------


SECONDS = re.compile(r"[0-9]+")


def retry_after_seconds(response, now=None):
    """Retry-After as seconds to wait: it may be a number of seconds or an HTTP date. None when absent or unusable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def api_error_detail(response, *secrets):
    """'code: message' from the API's error body ({"error": {"code", "message"}}), redacted and kept short."""
    try:
        error = json.loads(response.content).get("error") or {}
    except (ValueError, AttributeError):
        return ""
    if not isinstance(error, dict):
        return ""
    detail = ": ".join(str(part) for part in (error.get("code"), error.get("message")) if part)
    return redact(detail, *secrets)[:300]


class ApiClient:
    """Authenticated GETs against one integration's API, with retries, re-authentication and paging.

    ``tokens`` is anything with ``token()`` (a bearer token string) and ``drop()`` (forget it); auth.TokenSource.
    """

    def __init__(self, settings, tokens, sleep=time.sleep):
        self.settings = settings
        self.tokens = tokens
        self.transport = Transport(settings)
        self.api_name = API_NAMES[settings.flavour]
        self.sleep = sleep

    def url(self, path):
        return self.settings.base_url + path

    def get(self, url, params=None):
        """One GET with the retry rules; returns the successful response or raises an ApiFailed subclass."""
        path = urlsplit(url).path
        reauthenticated = False
        attempts = 0
        waited = 0.0
        while True:
            token = self.tokens.token()
            response = self.transport.send(
                "GET", url, params=params, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
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
            if (status == 429 or status >= 500) and attempts < self.settings.max_retries:
                delay = retry_after_seconds(response)
                if delay is None:
                    delay = FIRST_BACKOFF * 2**attempts
                elif delay > MAX_TOTAL_WAIT - waited:
                    raise self._throttled(response, delay)
                delay = min(delay, MAX_TOTAL_WAIT - waited)
                logger.info("%s answered %s on %s; retrying in %.1f s", self.api_name, status, path, delay)
                self.sleep(delay)
                waited += delay
                attempts += 1
                continue
            raise self._failure(response, path, attempts, token)

    def _throttled(self, response, delay):
        retry_at = datetime.now(UTC) + timedelta(seconds=delay)
        return Throttled(
            f"{self.api_name} is throttling this integration (HTTP {response.status_code}); "
            f"try again after {retry_at:%H:%M:%S} UTC.",
            "The API allows about 100 calls a minute and 1,500 an hour per tenant.",
            code=response.status_code,
            retry_at=retry_at,
        )

    def _failure(self, response, path, attempts, token):
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

    def get_json(self, url, params=None, page=1):
        response = self.get(url, params)
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

    def iter_items(self, path, params=None, page_size=None):
        """Yield the items of a list endpoint page by page, never holding more than one page.

        Follows @odata.nextLink; where the link is missing but a full page came back (the Defender API omits it
        when $top is given), asks for the next page with $skip. A bare JSON array (the SIEM API) is one page.
        A link to a page already read, or more than MAX_PAGES pages, fails rather than looping.
        """
        first_url = self.url(path)
        base_params = dict(params or {})
        if page_size:
            base_params["$top"] = page_size
        url, query = first_url, base_params
        followed = {_request_url(first_url, base_params)}
        received = 0
        page = 1
        previous_first = None
        while True:
            data = self.get_json(url, query, page)
            if isinstance(data, list):
                yield from data
                return
            items = data.get("value") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise BadResponse(f"Page {page} of {path} had no list of results; no partial result shown.")
            if items and page > 1 and items[0] == previous_first:
                raise BadResponse(f"{self.api_name} sent page {page} of {path} twice: it ignores $skip.")
            previous_first = items[0] if items else None
            yield from items
            received += len(items)
            next_link = data.get("@odata.nextLink")
            if next_link:
                url, query = self._own_link(next_link, path, page), None
                if _request_url(url, None) in followed:
                    raise BadResponse(
                        f"{self.api_name} repeated a page of {path}: the link on page {page} leads to a page already "
                        "read; stopped there, no partial result shown.",
                        "The service is paging wrongly; try again later, or with a different page size.",
                    )
                followed.add(_request_url(url, None))
            elif page_size and len(items) >= page_size:
                url, query = first_url, {**base_params, "$skip": received}
            else:
                return
            if page >= MAX_PAGES:
                raise ApiFailed(
                    f"{self.api_name} had more than {MAX_PAGES:,} pages of {path} ({received:,} results so far); "
                    "stopped there, no partial result shown.",
                    "Ask for a shorter time window, or raise the page size in Advanced options.",
                )
            page += 1

    def _own_link(self, link, path, page):
        """A next link must stay on the API's own origin: the bearer token goes with it."""
        try:
            same = isinstance(link, str) and _origin(link) == _origin(self.settings.base_url)
        except ValueError:
            raise BadResponse(
                f"Page {page} of {path} had a next link that is not a valid URL; not followed.",
                "The service sent a broken answer; try again.",
            ) from None
        if not same:
            other = urlsplit(link).hostname if isinstance(link, str) else None
            raise BadResponse(f"Page {page} of {path} linked to another host ({other}); not followed.")
        return link


def _request_url(url, params):
    """The URL as it is requested, with its query in requests' encoding, so links compare whatever their spelling."""
    request = requests.models.PreparedRequest()
    try:
        request.prepare_url(url, params)
    except requests.RequestException:
        return url
    return request.url


def _origin(url):
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)
