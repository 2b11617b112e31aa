"""The Test of a proxy rule: does the proxy answer, accept its credentials, and open tunnels where its integrations go?

Plain sockets, like the integration Test's network steps: the point is to show which of the three fails. Every socket
operation is bounded by the timeout, so a proxy that never answers fails within it.
"""

import base64
import socket
import ssl
import struct
import time

from defender.services.connection import url_host
from defender.services.errors import ProxyFailed, socks_credentials_failure
from defender.services.steps import PASSED, SKIPPED, TestResult, run_checks

# Where the tunnel is asked to go when no integration uses the rule yet: the sign-in host every integration needs first.
PROBE_TARGET = ("login.microsoftonline.com", 443)
# For each socket operation; the whole check takes at most a few of these.
TIMEOUT = 5.0
STEP_NAMES = ("Connection to the proxy", "Proxy credentials", "Tunnel")

SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


def check_proxy(proxy, timeout=TIMEOUT, targets=()):
    """Run the three steps against ``proxy`` (a ProxySettings); a TestResult with one Step each."""
    return TestResult(tuple(iter_proxy_steps(proxy, timeout, targets)))


def iter_proxy_steps(proxy, timeout=TIMEOUT, targets=()):
    """Yield each Step as it finishes. ``targets`` are the (host, port) pairs the tunnel is asked for, in order: the
    hosts the rule's integrations reach through it (an isolated lab's proxy may reach only those); Entra ID's public
    sign-in host when there are none."""
    targets = list(dict.fromkeys(targets)) or [PROBE_TARGET]
    probe = _ProxyProbe(proxy, timeout, targets[0])

    def tunnels():
        opened = [probe.open_tunnel()]
        for target in targets[1:]:
            # An HTTP proxy opens one tunnel per connection: each further destination gets a connection of its own.
            extra = _ProxyProbe(proxy, timeout, target)
            try:
                extra.connect()
                extra.authenticate()
                opened.append(extra.open_tunnel())
            finally:
                extra.close()
        if len(opened) == 1:
            return PASSED, f"The proxy opened a tunnel to {opened[0]}."
        return PASSED, f"The proxy opened tunnels to {', '.join(opened)}."

    try:
        checks = (probe.connect, probe.authenticate, tunnels)
        yield from run_checks(zip(STEP_NAMES, checks, strict=True), f"proxy {proxy.host}")
    finally:
        probe.close()


class _ProxyProbe:
    def __init__(self, proxy, timeout, target):
        self.proxy = proxy
        self.timeout = timeout
        self.target_host, self.target_port = target
        self.name = proxy.address
        self.sock = None
        self.answer = None  # the HTTP status line or SOCKS reply, read during authenticate

    def close(self):
        if self.sock is not None:
            self.sock.close()

    def connect(self):
        try:
            self.sock = socket.create_connection((self.proxy.host, self.proxy.port), timeout=self.timeout)
        except TimeoutError:
            raise ProxyFailed(
                f"No answer from the proxy {self.name} within {self.timeout:g} s.",
                "Check the proxy rule's host and port; a firewall may be dropping the traffic.",
            ) from None
        except ConnectionRefusedError:
            raise ProxyFailed(
                f"Connection to the proxy {self.name} was refused: nothing listens on that port.",
                "Check the proxy rule's port.",
            ) from None
        except OSError as exc:
            raise ProxyFailed(f"Could not reach the proxy {self.name}: {_why(exc)}.", "Check the host.") from None
        if self.proxy.proxy_type == "https":
            self._start_tls()
            return PASSED, f"Connected to {self.name} over TLS; its certificate is trusted."
        return PASSED, f"Connected to {self.name}."

    def _start_tls(self):
        context = ssl.create_default_context()
        if self.proxy.ca_certificate.strip():
            context.load_verify_locations(cadata=self.proxy.ca_certificate)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=self.proxy.host)
        except ssl.SSLCertVerificationError as exc:
            raise ProxyFailed(
                f"The proxy {self.name} presented a certificate that is not trusted ({exc.verify_message}).",
                "Paste the proxy's CA certificate into the proxy rule.",
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ProxyFailed(
                f"The TLS handshake with the proxy {self.name} failed: {_why(exc)}.",
                "Check that the proxy speaks HTTPS on this port, or choose the HTTP type.",
            ) from None

    def authenticate(self):
        if self.proxy.proxy_type == "socks5":
            return self._socks_authenticate()
        self.answer = self._http_connect()
        status = self.answer[0]
        if status == 407:
            advice = "Check the username and password." if self.proxy.username else "Set a username and password."
            raise ProxyFailed(f"The proxy {self.name} rejected its credentials (407).", advice)
        if not self.proxy.username:
            return SKIPPED, "The proxy rule has no credentials, and the proxy asked for none."
        return PASSED, f"The proxy {self.name} accepted the credentials of {self.proxy.username}."

    def open_tunnel(self):
        """Ask for the tunnel to the target; its host:port once open, else ProxyFailed naming it."""
        destination = f"{url_host(self.target_host)}:{self.target_port}"
        if self.proxy.proxy_type == "socks5":
            self._socks_connect()
            return destination
        status, status_line = self.answer
        if status == 200:
            return destination
        raise ProxyFailed(
            f"The proxy answered CONNECT {destination} with {status_line or 'nothing'}.",
            "Check that the proxy allows this destination and can reach the internet.",
        )

    # --- HTTP and HTTPS proxies --------------------------------------------------------------------------------

    def _http_connect(self):
        authority = f"{url_host(self.target_host)}:{self.target_port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if self.proxy.username:
            basic = base64.b64encode(f"{self.proxy.username}:{self.proxy.password}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {basic}")
        head = self._exchange(("\r\n".join(lines) + "\r\n\r\n").encode(), until=b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isascii() and parts[1].isdigit()):
            raise ProxyFailed(
                f"The proxy {self.name} did not answer like an HTTP proxy.",
                "Check the proxy rule's type (HTTP, HTTPS or SOCKS5) and port.",
            )
        return int(parts[1]), status_line

    # --- SOCKS5 (RFC 1928, username/password per RFC 1929) ----------------------------------------------------

    def _socks_authenticate(self):
        methods = b"\x00\x02" if self.proxy.username else b"\x00"
        version, method = self._exchange(b"\x05" + bytes([len(methods)]) + methods, size=2)
        if version != 5:
            raise ProxyFailed(
                f"The proxy {self.name} did not answer like a SOCKS5 proxy.", "Check the proxy rule's type and port."
            )
        if method == 0xFF:
            raise ProxyFailed(
                f"The SOCKS proxy {self.name} accepts none of the offered authentication methods.",
                "Set a username and password on the proxy rule." if not self.proxy.username else "",
            )
        if method == 0:
            return SKIPPED, "The SOCKS proxy asked for no credentials."
        # The integrations' calls must be able to send these credentials too, so their limit applies here as well.
        failure = socks_credentials_failure(self.proxy)
        if failure is not None:
            raise failure
        user, password = self.proxy.username.encode(), self.proxy.password.encode()
        request = b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        _, status = self._exchange(request, size=2)
        if status != 0:
            raise ProxyFailed(
                f"The SOCKS proxy {self.name} rejected its credentials.", "Check the username and password."
            )
        return PASSED, f"The SOCKS proxy {self.name} accepted the credentials of {self.proxy.username}."

    def _socks_connect(self):
        host = self.target_host.encode("idna")
        request = b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack("!H", self.target_port)
        reply = self._exchange(request, size=4)
        if reply[1] != 0:
            reason = SOCKS_REPLIES.get(reply[1], f"reply code {reply[1]}")
            raise ProxyFailed(
                f"The SOCKS proxy could not open a tunnel to {self.target_host}:{self.target_port}: {reason}."
            )

    # --- reading and writing, bounded ----------------------------------------------------------------------------

    def _exchange(self, data, size=None, until=None):
        """Send data, then read ``size`` bytes or up to the ``until`` marker, all within the timeout."""
        deadline = time.monotonic() + self.timeout
        answer = b""
        try:
            self.sock.sendall(data)
            while (size is not None and len(answer) < size) or (until is not None and until not in answer):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(4096 if until else size - len(answer))
                if not chunk or len(answer) > 65536:
                    break
                answer += chunk
        except TimeoutError:
            raise ProxyFailed(
                f"The proxy {self.name} accepted the connection but did not answer within {self.timeout:g} s.",
                "Check the proxy rule's type and port.",
            ) from None
        except OSError as exc:
            raise ProxyFailed(f"The proxy {self.name} broke off the connection: {_why(exc)}.") from None
        if size is not None and len(answer) < size:
            raise ProxyFailed(f"The proxy {self.name} closed the connection without answering.")
        return answer


def _why(exc):
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
