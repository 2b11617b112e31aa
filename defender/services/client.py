"""The one HTTP seam: every request to Entra ID, Defender, Graph or the SIEM exporter goes through here.

Here, once: the requests session per integration, the TLS trust bundle, the proxy rule, timeouts, retries on 429/5xx
with Retry-After, one re-authentication on 401, paging, and the translation of low-level failures into errors a
person can act on. No other module imports requests.
"""

import email.utils
import hashlib
import json
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import requests
import socks
from requests.adapters import HTTPAdapter

from defender import presets
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
)

logger = logging.getLogger(__name__)

# The longest we sleep for retries during one call, all attempts together. A caller waits at a button or in a job;
# a Retry-After beyond this fails at once with the time to try again.
MAX_TOTAL_WAIT = 60.0
# The first back-off for a 5xx without Retry-After; doubled on each further attempt.
FIRST_BACKOFF = 0.5

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
    if verify_code == 62:
        return TlsFailed(
            f"The certificate presented by {host} is not valid for that name ({verify_message}){by}.",
            "Check the host name: it must match a name in the server's certificate.",
            code=verify_code,
        )
    return TlsFailed(f"The certificate for {host} failed verification: {verify_message}{by}.", fix, code=verify_code)


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
        started = time.monotonic()
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=data,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                proxies=self.proxies_for(url),
            )
        except requests.RequestException as exc:
            raise self.translate(exc, url) from None
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method,
            urlsplit(url).path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    # msal's http_client interface. msal passes nothing else we honour: the integration's settings always win.
    def get(self, url, params=None, headers=None, **kwargs):
        return self.send("GET", url, params=params, headers=headers)

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        return self.send("POST", url, params=params, data=data, headers=headers)

    def close(self):
        """msal may close its http client; the session is shared, so it stays open."""

    def translate(self, exc, url):
        """A requests exception as a ConnectionFailed/ProxyFailed/TlsFailed that says what to check."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        target = f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        chain = _causes(exc)
        verify_error = next((c for c in chain if isinstance(c, ssl.SSLCertVerificationError)), None)
        if verify_error is not None:
            return certificate_failure(host, verify_error.verify_code, verify_error.verify_message)
        proxy = self.settings.proxy if self.settings.proxy and self.proxies_for(url) else None
        failure = _proxy_failure(exc, chain, proxy, target) if proxy else None
        if failure is not None:
            return failure
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            via = f" through the proxy {proxy.host}:{proxy.port}" if proxy else ""
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
    name = f"{proxy.host}:{proxy.port}"
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


def retry_after_seconds(response, now=None):
    """Retry-After as seconds to wait: it may be a number of seconds or an HTTP date. None when absent or unusable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


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

    def iter_items(self, path, params=None, page_size=None):
        """Yield the items of a list endpoint page by page, never holding more than one page.

        Follows @odata.nextLink; where the link is missing but a full page came back (the Defender API omits it
        when $top is given), asks for the next page with $skip. A bare JSON array (the SIEM API) is one page.
        """
        first_url = self.url(path)
        base_params = dict(params or {})
        if page_size:
            base_params["$top"] = page_size
        url, query = first_url, base_params
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
            elif page_size and len(items) >= page_size:
                url, query = first_url, {**base_params, "$skip": received}
            else:
                return
            page += 1

    def _own_link(self, link, path, page):
        """A next link must stay on the API's own origin: the bearer token goes with it."""
        if _origin(link) != _origin(self.settings.base_url):
            other = urlsplit(link).hostname
            raise BadResponse(f"Page {page} of {path} linked to another host ({other}); not followed.")
        return link


def _origin(url):
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)
