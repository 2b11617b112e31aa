"""The Test: DNS -> TCP -> TLS -> token -> permissions -> one API call, each step timed and explained.

The network steps use plain sockets on purpose: they show where a connection breaks (name, port, proxy, certificate)
before any HTTP library folds it into one error. Through a proxy they reach the proxy, ask it for a tunnel, and run
TLS inside the tunnel, as the API calls will. After a failure the later steps are skipped.
"""

import base64
import ipaddress
import logging
import socket
import ssl
import threading
import time
from datetime import UTC, datetime

import socks
from cryptography import x509
from cryptography.x509.oid import NameOID

from defender import presets
from defender.services import alerts, auth
from defender.services.addresses import refuse_metadata
from defender.services.client import certificate_failure, trust_for
from defender.services.connection import url_host
from defender.services.errors import (
    ConnectionFailed,
    DefenderError,
    PermissionMissing,
    ProxyFailed,
    TlsFailed,
    permission_advice,
    socks_credentials_failure,
)
from defender.services.steps import PASSED, SKIPPED, TestResult, run_checks

logger = logging.getLogger(__name__)

STEP_NAMES = ("DNS lookup", "TCP connection", "TLS handshake", "Token", "Permissions", "API call")


def run_test(settings):
    return TestResult(tuple(iter_test_steps(settings)))


def iter_test_steps(settings):
    """Yield each Step as it finishes, so a page can show them one by one."""
    probe = _Probe(settings)
    checks = (probe.dns, probe.tcp, probe.tls, probe.token, probe.permissions, probe.api_call)
    try:
        yield from run_checks(zip(STEP_NAMES, checks, strict=True), settings.name or settings.host)
    finally:
        probe.close()


class _Probe:
    """The state the steps share: the route (direct or through the proxy), the open tunnel and the token."""

    def __init__(self, settings):
        self.settings = settings
        proxy = settings.proxy
        self.proxy = proxy if proxy is not None and not proxy.bypasses(settings.host) else None
        self.target = f"{_bracket(settings.host)}:{settings.port}"
        self.addresses = []
        self.sock = None
        self.token_value = None

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # --- DNS ---------------------------------------------------------------------------------------------------

    def dns(self):
        name = self.proxy.host if self.proxy else self.settings.host
        port = self.proxy.port if self.proxy else self.settings.port
        whose = f"The proxy {name}" if self.proxy else name
        if self.proxy:
            # The proxy resolves the API host itself: refuse at least a host that names a metadata service.
            refuse_metadata(self.settings.host, [])
        if _is_ip(name):
            refuse_metadata(name, [name])
            self.addresses = [(name, port)]
            return PASSED, f"{whose} is an IP address; nothing to look up."
        self.addresses = _resolve(name, port, self.settings.connect_timeout)
        # The form refused such names as typed; this catches a name that resolves there (DNS may say anything).
        refuse_metadata(name, [address for address, _ in self.addresses])
        shown = ", ".join(dict.fromkeys(address for address, _ in self.addresses))
        note = f" (the proxy looks up {self.settings.host} itself)" if self.proxy else ""
        return PASSED, f"{whose} resolves to {shown}{note}."

    # --- TCP (and the proxy's tunnel) --------------------------------------------------------------------------

    def tcp(self):
        self.sock = self._open_route()
        if self.proxy:
            return (
                PASSED,
                f"Connected to the proxy {self.proxy.address}, which opened a tunnel to {self.target}.",
            )
        return PASSED, f"Connected to {self.target}."

    def _open_route(self):
        """A socket that reaches host:port, directly or through the proxy's tunnel, within the connect timeout."""
        timeout = self.settings.connect_timeout
        if self.proxy is None:
            return _connect(self.addresses, timeout, self.target)
        proxy = self.proxy
        proxy_name = proxy.address
        if proxy.proxy_type == "socks5":
            return self._socks_tunnel(proxy, proxy_name, timeout)
        sock = _connect(self.addresses, timeout, f"the proxy {proxy_name}")
        try:
            if proxy.proxy_type == "https":
                context = _context(trust_for(self.settings))
                sock = context.wrap_socket(sock, server_hostname=proxy.host)
            _http_connect(sock, proxy, self.settings.host, self.settings.port)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise certificate_failure(f"the proxy {proxy.host}", exc.verify_code, exc.verify_message) from None
        except (OSError, DefenderError) as exc:
            sock.close()
            if isinstance(exc, DefenderError):
                raise
            raise ProxyFailed(f"The proxy {proxy_name} did not open a tunnel: {_why(exc)}.") from None
        return sock

    def _socks_tunnel(self, proxy, proxy_name, timeout):
        failure = socks_credentials_failure(proxy)
        if failure is not None:
            raise failure
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
            sock.connect((self.settings.host, self.settings.port))
        except socks.ProxyError as exc:
            sock.close()
            # PySocks wraps what happened during the negotiation in a GeneralProxyError.
            inner = exc.socket_err if isinstance(exc, socks.GeneralProxyError) and exc.socket_err else exc
            if isinstance(inner, socks.SOCKS5AuthError):
                raise ProxyFailed(
                    f"The SOCKS proxy {proxy_name} rejected its credentials.",
                    "Check the username and password of the proxy rule.",
                ) from None
            if isinstance(exc, socks.ProxyConnectionError):
                raise ProxyFailed(
                    f"Could not reach the SOCKS proxy {proxy_name}: {_why(exc.socket_err or exc)}.",
                    "Check the proxy rule's host and port.",
                ) from None
            detail = inner.msg if isinstance(inner, socks.ProxyError) else _why(inner)
            raise ProxyFailed(
                f"The SOCKS proxy {proxy_name} could not open a tunnel to {self.target} ({detail}).",
                "Check that the proxy allows this destination and can reach it.",
            ) from None
        except OSError as exc:
            sock.close()
            raise ProxyFailed(f"The SOCKS proxy {proxy_name} failed: {_why(exc)}.") from None
        return sock

    # --- TLS ---------------------------------------------------------------------------------------------------

    def tls(self):
        if self.settings.protocol != "https":
            if self._speaks_tls():
                # Plain HTTP to a TLS port ends in a reset later on, which would blame the host or the proxy.
                raise TlsFailed(
                    f"{self.target} speaks HTTPS, but the integration's Protocol is HTTP.",
                    "Set Protocol to HTTPS (or check the port: plain HTTP usually listens on another one).",
                )
            return (
                SKIPPED,
                "The API is set to plain HTTP: there is no certificate to check, and traffic is not encrypted.",
            )
        verify = trust_for(self.settings)
        sock, self.sock = self.sock, None
        try:
            tls = _handshake(sock, _context(verify), self.settings.host, self.settings.connect_timeout, self.target)
        except ssl.SSLCertVerificationError as exc:
            issuer = self._issuer_of_presented_certificate()
            raise certificate_failure(self.settings.host, exc.verify_code, exc.verify_message, issuer) from None
        finally:
            sock.close()
        if verify is False:
            return PASSED, (
                f"Connected with {tls.version()}, but certificate verification is OFF: anyone in the path could pose "
                "as the API. Turn Verify TLS back on (and set a CA certificate if needed)."
            )
        certificate = tls.getpeercert()
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(certificate["notAfter"]), UTC)
        return PASSED, (
            f"The certificate for {self.settings.host} (issued by {_name(certificate.get('issuer'))}) is trusted and "
            f"valid until {expires:%Y-%m-%d}; {tls.version()}."
        )

    def _speaks_tls(self):
        """Whether the API's port completes a TLS handshake (certificate not checked), over the same route."""
        try:
            sock = self._open_route()
        except (OSError, DefenderError):
            return False
        try:
            _handshake(sock, _context(False), self.settings.host, self.settings.connect_timeout, self.target)
        except (OSError, ssl.SSLError, DefenderError):
            return False
        finally:
            sock.close()
        return True

    def _issuer_of_presented_certificate(self):
        """Who signed the certificate that failed, read over a second connection that does not verify."""
        try:
            sock = self._open_route()
            try:
                tls = _handshake(sock, _context(False), self.settings.host, self.settings.connect_timeout, self.target)
                der = tls.getpeercert(binary_form=True)
            finally:
                sock.close()
            issuer = x509.load_der_x509_certificate(der).issuer
        except (OSError, ValueError, DefenderError):
            return ""
        names = {attribute.oid: attribute.value for attribute in issuer}
        if NameOID.COMMON_NAME in names:
            return names[NameOID.COMMON_NAME]
        return ", ".join(
            names[oid] for oid in (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME) if oid in names
        )

    # --- token, permissions, API call --------------------------------------------------------------------------

    def token(self):
        # A fresh token, so a permission granted a minute ago shows up in the next step.
        token = auth.acquire_token(self.settings, fresh=True)
        self.token_value = token
        host = auth.authority_url(self.settings).split("/")[2]
        return (
            PASSED,
            f"Entra ID at {host} issued a token for {token.audience}, valid until {token.expires_at:%H:%M} UTC.",
        )

    def permissions(self):
        required = presets.REQUIRED_ROLES[self.settings.flavour]
        if not required:
            return SKIPPED, "The legacy SIEM API takes no application roles; the API call below proves access."
        roles = set(self.token_value.roles)
        missing = [
            role for role in required if role not in roles and role.replace(".Read.", ".ReadWrite.") not in roles
        ]
        if missing:
            has = f" (it has {', '.join(sorted(roles))})" if roles else " (it has no application roles)"
            raise PermissionMissing(
                f"The token lacks {' and '.join(missing)}{has}.", permission_advice(self.settings.flavour, missing)
            )
        return PASSED, f"The token holds {', '.join(required)}."

    def api_call(self):
        return PASSED, alerts.probe_api(self.settings)


def _is_ip(name):
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _bracket(host):
    return url_host(host)


def _resolve(name, port, timeout):
    """getaddrinfo has no timeout of its own; run it aside and stop waiting after the connect timeout."""
    outcome = {}

    def lookup():
        try:
            outcome["addresses"] = [
                (info[4][0], port) for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            ]
        except OSError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if "addresses" in outcome:
        return outcome["addresses"]
    if "error" in outcome:
        raise ConnectionFailed(
            f"The name {name} could not be resolved (DNS).", "Check the host name and this site's DNS server."
        )
    raise ConnectionFailed(f"Looking up {name} took longer than {timeout:g} s (DNS).", "Check this site's DNS server.")


def _connect(addresses, timeout, what):
    """TCP to the first address that answers, all attempts together bounded by the connect timeout."""
    deadline = time.monotonic() + timeout
    failure = None
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
    if isinstance(failure, ConnectionRefusedError):
        raise ConnectionFailed(
            f"Connection to {what} was refused: nothing listens on that port.",
            "Check the port, and that no firewall rejects the connection.",
        )
    if failure is not None:
        raise ConnectionFailed(f"Could not connect to {what}: {_why(failure)}.", "Check the host and the network.")
    raise ConnectionFailed(
        f"No answer from {what} within {timeout:g} s (connect timeout).",
        "Check the host and port; a firewall may be dropping the traffic.",
    )


def _http_connect(sock, proxy, host, port):
    """Ask an HTTP(S) proxy for a tunnel; 407 means its credentials are wrong or missing."""
    authority = f"{_bracket(host)}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username:
        basic = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {basic}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
        if len(answer) > 65536:
            break
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isascii() and parts[1].isdigit() else 0
    proxy_name = proxy.address
    if status == 200:
        return
    if status == 407:
        raise ProxyFailed(
            f"The proxy {proxy_name} rejected its credentials (407 Proxy Authentication Required).",
            "Check the username and password of the proxy rule."
            if proxy.username
            else "Set a username and password on the proxy rule.",
            code=407,
        )
    if status == 0:
        raise ProxyFailed(f"The proxy {proxy_name} closed the connection without answering CONNECT {authority}.")
    raise ProxyFailed(
        f"The proxy {proxy_name} refused to open a tunnel to {authority} ({status_line.strip()}).",
        "Check that the proxy allows this destination.",
        code=status,
    )


def _context(verify):
    """An SSL context like the API calls use: the same bundle, or no verification when it is off."""
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify)


def _handshake(sock, context, host, timeout, target):
    """TLS over any socket, including a TLS tunnel to an HTTPS proxy (TLS in TLS, hence the memory BIOs).

    The whole handshake is bounded by the connect timeout: a port that accepts but never answers fails here fast.
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
                return tls
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
                        f"{target} closed the connection during the TLS handshake.",
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
        raise TlsFailed(f"The TLS handshake with {target} broke off: {_why(exc)}.") from None


def _name(rdns):
    """A distinguished name from ssl.getpeercert() as people read it: its common name, else its organisation."""
    fields = {}
    for rdn in rdns or ():
        for key, value in rdn:
            fields.setdefault(key, value)
    if "commonName" in fields:
        return fields["commonName"]
    return ", ".join(fields[key] for key in ("organizationName", "organizationalUnitName") if key in fields) or "?"


def _why(exc):
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
