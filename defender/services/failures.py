"""What went wrong with a request, in words a person can act on: the low-level failures the transport meets (a name
that does not resolve, a refused port, a proxy, a certificate, a timeout, a redirect, a body too slow or too large)
as ConnectionFailed, ProxyFailed, TlsFailed or BadResponse naming the hop that failed. (What a body that is too slow
or too large means, the transport says where it measures it.)"""

import http
import socket
import ssl
from enum import StrEnum
from urllib.parse import urljoin, urlsplit

import socks

from defender.services.connection import Reach, origin, target, url_host, url_hostname
from defender.services.errors import BadResponse, ConnectionFailed, DefenderError, ProxyFailed, TlsFailed
from defender.services.route import Route
from defender.services.trust import certificate_failure


class Kind(StrEnum):
    """How the HTTP library classed a failure, before the causes it wraps are read."""

    CONNECT_TIMEOUT = "connect timeout"
    READ_TIMEOUT = "read timeout"
    TIMEOUT = "timeout"
    TLS = "tls"
    PROXY = "proxy"
    OTHER = "other"


def translate(exc: BaseException, kind: Kind, url: str, reach: Reach, route: Route) -> DefenderError:
    """A failed request as a ConnectionFailed/ProxyFailed/TlsFailed that says what to check."""
    where = target(url)
    chain = causes(exc)
    verify_error = next((c for c in chain if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verify_error is not None:
        return certificate_failure(url_hostname(url), verify_error.verify_code or 0, verify_error.verify_message or "")
    failure = _proxy_failure(kind, chain, route, where) if route.proxy else None
    if failure is not None:
        return failure
    if kind == Kind.CONNECT_TIMEOUT:
        via = f" through the proxy {route.proxy_name}" if route.proxy else ""
        return ConnectionFailed(
            f"No answer from {where}{via} within {reach.connect_timeout:g} s (connect timeout).",
            "Check the host, the port and any firewall between this site and the service.",
        )
    if kind in (Kind.READ_TIMEOUT, Kind.TIMEOUT) and mentions(chain, "handshake"):
        # urllib3 bounds the handshake by the connect timeout but reports it as a read timeout.
        return TlsFailed(
            f"No TLS answer from {where} within {reach.connect_timeout:g} s: the port accepts "
            "connections but does not complete a TLS handshake.",
            "Check the port and protocol, and whether something between this site and the service holds connections.",
        )
    if kind == Kind.READ_TIMEOUT:
        return ConnectionFailed(
            f"{where} accepted the connection but did not answer within {reach.read_timeout:g} s (read timeout).",
            "Try again; raise the read timeout in Advanced options if it persists.",
        )
    if kind == Kind.TLS:
        return TlsFailed(
            f"The TLS handshake with {where} failed: {reason(chain)}.",
            "Check the port and protocol: the server must speak HTTPS there.",
        )
    if has(chain, socket.gaierror):
        return ConnectionFailed(
            f"The name {url_hostname(url)} could not be resolved (DNS).",
            "Check the host name and this site's DNS server.",
        )
    if has(chain, ConnectionRefusedError):
        return ConnectionFailed(
            f"Connection to {where} was refused: nothing listens on that port.", "Check the host and the port."
        )
    return ConnectionFailed(f"Could not talk to {where}: {reason(chain)}.", "Check the host, port and proxy.")


def _proxy_failure(kind: Kind, chain: list[BaseException], route: Route, where: str) -> ProxyFailed | None:
    """What went wrong at the proxy (credentials, its refusal to tunnel, or reaching it at all), or None."""
    assert route.proxy is not None
    name = route.proxy_name
    if has(chain, socks.SOCKS5AuthError) or mentions(chain, "407 Proxy Authentication Required"):
        status = "" if route.proxy.proxy_type == "socks5" else " (407 Proxy Authentication Required)"
        return ProxyFailed(
            f"The proxy {name} rejected its credentials{status}.",
            route.check("username and password"),
            code=407 if status else None,
        )
    refusal = next(
        (c for c in chain if isinstance(c, socks.SOCKS5Error) or str(c).startswith("Tunnel connection failed")), None
    )
    if refusal is not None:
        detail = refusal.msg if isinstance(refusal, socks.ProxyError) else str(refusal).split(": ", 1)[-1]
        return ProxyFailed(
            f"The proxy {name} could not open a tunnel to {where} ({detail}).",
            "Check that the proxy allows this destination and can reach it.",
        )
    if kind == Kind.PROXY or has(chain, socks.ProxyConnectionError):
        return ProxyFailed(f"Could not reach the proxy {name}: {reason(chain)}.", route.check("host and port"))
    return None


def redirect_failure(status: int, location: str, url: str, reach: Reach) -> BadResponse:
    """A 3xx as an error that says where it pointed and which setting to check."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "a redirect status"
    location = location.strip()
    if not location:
        where = "with no Location"
    else:
        try:
            goes_to = urlsplit(urljoin(url, location))
            same = origin(urljoin(url, location)) == origin(url)
            netloc = url_host(goes_to.hostname or "") + (f":{goes_to.port}" if goes_to.port else "")
        except ValueError:
            goes_to, same, netloc = None, False, ""
        if goes_to is None or not netloc:
            where = "a redirect to an address that is not a valid URL"
        elif same:
            where = f"a redirect to {goes_to.path[:100] or '/'} on the same host"
        else:
            where = f"a redirect to {goes_to.scheme}://{netloc}"
    who, advice = reach.answered_by(url)
    return BadResponse(
        f"{who} answered {status} {phrase}, {where}; this console does not follow redirects.", advice, code=status
    )


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (urllib3 nests its reasons in args, .reason and __context__)."""
    seen: set[int] = set()
    stack, chain = [exc], []
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


def has(chain: list[BaseException], kind: type[BaseException]) -> bool:
    return any(isinstance(item, kind) for item in chain)


def mentions(chain: list[BaseException], text: str) -> bool:
    return any(text in str(item) for item in chain)


def reason(chain: list[BaseException]) -> str:
    """The innermost plain reason (e.g. 'Connection reset by peer'), without URLs or credentials."""
    if has(chain, TimeoutError):
        return "no answer in time"
    for item in reversed(chain):
        if isinstance(item, OSError) and item.strerror:
            return item.strerror
    for item in reversed(chain):
        if isinstance(item, ssl.SSLError) and item.reason:
            return item.reason.replace("_", " ").lower()
    return type(chain[-1]).__name__
