"""The road over plain sockets, for the Test and the proxy Test: a name looked up, a TCP connection, a tunnel through
an HTTP(S) proxy (CONNECT) or a SOCKS5 one (PySocks, as the API calls use), and TLS over whatever socket that gave.

Plain sockets on purpose: they show where a connection breaks (name, port, proxy, certificate) before an HTTP
library folds it into one error. Every operation is bounded by the timeout it is given.
"""

import base64
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import socks

from defender.services.connection import url_host
from defender.services.errors import ConnectionFailed, DefenderError, ProxyFailed, TlsFailed, socks_credentials_failure
from defender.services.route import Route
from defender.services.trust import Verify, certificate_failure, tls_context

# The most a proxy's answer to CONNECT may take before its end; beyond it, it is not an HTTP proxy.
MAX_CONNECT_ANSWER = 65536


def resolve(name: str, port: int, timeout: float) -> list[tuple[str, int]]:
    """getaddrinfo has no timeout of its own; run it aside and stop waiting after the connect timeout."""
    addresses: list[tuple[str, int]] = []
    errors: list[OSError] = []

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            errors.append(exc)
            return
        addresses.extend((str(info[4][0]), port) for info in infos)

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if addresses:
        return addresses
    if errors:
        raise ConnectionFailed(
            f"The name {name} could not be resolved (DNS).", "Check the host name and this site's DNS server."
        )
    raise ConnectionFailed(f"Looking up {name} took longer than {timeout:g} s (DNS).", "Check this site's DNS server.")


def connect(addresses: list[tuple[str, int]], timeout: float, what: str) -> socket.socket:
    """TCP to the first address that answers, all attempts together bounded by the timeout; ``what`` names the
    server in messages ("127.0.0.1:443", "the proxy proxy.example.com:3128")."""
    deadline = time.monotonic() + timeout
    failure: OSError | None = None
    for address, port in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return socket.create_connection((address, port), timeout=remaining)
        except TimeoutError:
            failure = None
            break
        except OSError as exc:
            failure = exc
    raise tcp_failure(failure, what, timeout)


def tcp_failure(failure: OSError | None, what: str, timeout: float) -> ConnectionFailed:
    """What a failed TCP connection to ``what`` means; None (or a timeout) is no answer in time."""
    if isinstance(failure, ConnectionRefusedError):
        return ConnectionFailed(
            f"Connection to {what} was refused: nothing listens on that port.",
            "Check the port, and that no firewall rejects the connection.",
        )
    if failure is not None and not isinstance(failure, TimeoutError):
        return ConnectionFailed(f"Could not connect to {what}: {why(failure)}.", "Check the host and the network.")
    return ConnectionFailed(
        f"No answer from {what} within {timeout:g} s (connect timeout).",
        "Check the host and port; a firewall may be dropping the traffic.",
    )


# --- TLS over any socket ------------------------------------------------------------------------------------------


class Carrier(Protocol):
    """What TLS and CONNECT run over: a socket, or a TLS channel (to an HTTPS proxy, for TLS in TLS)."""

    def settimeout(self, value: float | None, /) -> None: ...

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class Channel:
    """A TLS connection over a carrier, through memory BIOs, so that it can run inside another one."""

    def __init__(self, carrier: Carrier, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> None:
        self.carrier = carrier
        self.tls = tls
        self._incoming = incoming
        self._outgoing = outgoing

    def settimeout(self, value: float | None, /) -> None:
        self.carrier.settimeout(value)

    def sendall(self, data: bytes, /) -> None:
        self.tls.write(data)
        self._flush()

    def recv(self, size: int, /) -> bytes:
        while True:
            try:
                return self.tls.read(size)
            except ssl.SSLWantReadError:
                self._flush()
                data = self.carrier.recv(65536)
                if not data:
                    return b""
                self._incoming.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def close(self) -> None:
        self.carrier.close()

    def _flush(self) -> None:
        if self._outgoing.pending:
            self.carrier.sendall(self._outgoing.read())


def handshake(sock: Carrier, context: ssl.SSLContext, host: str, timeout: float, target: str) -> Channel:
    """TLS over any carrier: a socket, or a TLS channel to an HTTPS proxy (TLS in TLS, hence the memory BIOs).

    The whole handshake is bounded by the timeout: a port that accepts but never answers fails here fast.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                tls.do_handshake()
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                return Channel(sock, tls, incoming, outgoing)
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError from None
                sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    raise TlsFailed(
                        f"{_capital(target)} closed the connection during the TLS handshake.",
                        "Check the port and protocol: the server may not speak HTTPS there.",
                    ) from None
                incoming.write(data)
    except TimeoutError:
        raise TlsFailed(
            f"No TLS answer from {target} within {timeout:g} s: the port accepts connections but does not complete "
            "a TLS handshake.",
            "Check the port and protocol, and whether something between this site and the service holds connections.",
        ) from None
    except ssl.SSLCertVerificationError:
        raise
    except ssl.SSLError as exc:
        raise TlsFailed(
            f"The TLS handshake with {target} failed: {(exc.reason or str(exc)).replace('_', ' ').lower()}.",
            "Check the port and protocol: the server must speak HTTPS there.",
        ) from None
    except OSError as exc:
        raise TlsFailed(f"The TLS handshake with {target} broke off: {why(exc)}.") from None


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- HTTP(S) proxies ----------------------------------------------------------------------------------------------


def proxy_tls(sock: Carrier, route: Route, verify: Verify, timeout: float) -> Channel:
    """TLS to an HTTPS proxy itself, its certificate checked like the API calls check it; closes sock on failure."""
    assert route.proxy is not None
    name = f"the proxy {route.proxy_name}"
    try:
        return handshake(sock, tls_context(verify), route.proxy.host, timeout, name)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise certificate_failure(name, exc.verify_code or 0, exc.verify_message or "") from None
    except DefenderError:
        sock.close()
        raise


@dataclass(frozen=True)
class ConnectAnswer:
    """What an HTTP proxy answered to CONNECT: its status and status line ("HTTP/1.1 502 Bad Gateway")."""

    status: int
    status_line: str


def http_connect(sock: Carrier, route: Route, host: str, port: int, timeout: float) -> ConnectAnswer:
    """Ask an HTTP(S) proxy for a tunnel to host:port, with the proxy's credentials if it has any; what it answered,
    or ProxyFailed when it did not answer like an HTTP proxy within the timeout."""
    proxy = route.proxy
    assert proxy is not None
    authority = f"{url_host(host)}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username:
        basic = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {basic}")
    deadline = time.monotonic() + timeout
    head = b""
    try:
        sock.settimeout(timeout)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while b"\r\n\r\n" not in head and len(head) <= MAX_CONNECT_ANSWER:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    except TimeoutError:
        raise _silent(route, timeout) from None
    except OSError as exc:
        raise ProxyFailed(f"The proxy {route.proxy_name} broke off the connection: {why(exc)}.") from None
    if not head:
        raise ProxyFailed(f"The proxy {route.proxy_name} closed the connection without answering CONNECT {authority}.")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isascii() and parts[1].isdigit()):
        raise ProxyFailed(
            f"The proxy {route.proxy_name} did not answer like an HTTP proxy.",
            route.check("type (HTTP, HTTPS or SOCKS5) and port"),
        )
    return ConnectAnswer(int(parts[1]), status_line)


def _silent(route: Route, timeout: float) -> ProxyFailed:
    return ProxyFailed(
        f"The proxy {route.proxy_name} accepted the connection but did not answer within {timeout:g} s.",
        route.check("type and port"),
    )


# --- SOCKS5 proxies -----------------------------------------------------------------------------------------------


class Stage(StrEnum):
    """Where a tunnel through a proxy broke: reaching the proxy, its credentials, or the tunnel it was asked for."""

    REACH = "reach"
    CREDENTIALS = "credentials"
    TUNNEL = "tunnel"


class TunnelFailed(ProxyFailed):
    def __init__(self, message: str, advice: str = "", *, stage: Stage) -> None:
        super().__init__(message, advice)
        self.stage = stage


def socks_tunnel(route: Route, host: str, port: int, timeout: float) -> socket.socket:
    """A socket through a SOCKS5 proxy to host:port (the proxy resolves the name), or TunnelFailed saying where it
    broke; each socket operation waits at most the timeout."""
    proxy = route.proxy
    assert proxy is not None
    unsendable = socks_credentials_failure(proxy)
    if unsendable is not None:
        raise TunnelFailed(unsendable.message, unsendable.advice, stage=Stage.CREDENTIALS)
    name = route.proxy_name
    sock = socks.socksocket()
    sock.set_proxy(
        socks.SOCKS5,
        proxy.host,
        proxy.port,
        rdns=True,
        username=proxy.username or None,
        password=proxy.password or None,
    )
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
    except socks.ProxyConnectionError as exc:
        sock.close()
        failure = tcp_failure(exc.socket_err, f"the SOCKS proxy {name}", timeout)
        raise TunnelFailed(failure.message, failure.advice, stage=Stage.REACH) from None
    except OSError as exc:  # PySocks' errors are OSErrors; it wraps what happened while negotiating
        sock.close()
        inner = exc.socket_err if isinstance(exc, socks.GeneralProxyError) and exc.socket_err else exc
        raise _socks_failure(route, inner, f"{url_host(host)}:{port}", timeout) from None
    tunnel: socket.socket = sock  # PySocks' socksocket is a socket
    return tunnel


def _socks_failure(route: Route, exc: BaseException, destination: str, timeout: float) -> TunnelFailed:
    assert route.proxy is not None
    name = route.proxy_name
    if isinstance(exc, socks.SOCKS5AuthError):
        if not route.proxy.username:
            return TunnelFailed(
                f"The SOCKS proxy {name} asks for a username and password.",
                "Set a username and password on the proxy rule." if not route.variable else route.check("proxy URL"),
                stage=Stage.CREDENTIALS,
            )
        return TunnelFailed(
            f"The SOCKS proxy {name} rejected its credentials.",
            route.check("username and password"),
            stage=Stage.CREDENTIALS,
        )
    if isinstance(exc, socks.SOCKS5Error):
        return TunnelFailed(
            f"The SOCKS proxy {name} could not open a tunnel to {destination} ({exc.msg}).",
            "Check that the proxy allows this destination and can reach it.",
            stage=Stage.TUNNEL,
        )
    if isinstance(exc, TimeoutError):
        silent = _silent(route, timeout)
        return TunnelFailed(silent.message, silent.advice, stage=Stage.CREDENTIALS)
    if isinstance(exc, socks.GeneralProxyError):  # "sent invalid data"
        return TunnelFailed(
            f"The proxy {name} did not answer like a SOCKS5 proxy.",
            route.check("type and port"),
            stage=Stage.CREDENTIALS,
        )
    return TunnelFailed(f"The SOCKS proxy {name} failed: {why(exc)}.", stage=Stage.CREDENTIALS)


def why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
