"""The Test: DNS -> TCP -> TLS -> token -> permissions -> one API call, each step timed and explained.

The network steps take the road the API calls take (services.route: directly, through the proxy rule, or through the
environment's proxy), over plain sockets (services.tunnel), so that they show where a connection breaks: the name,
the port, the proxy, the certificate. Through a proxy they reach the proxy, ask it for a tunnel, and run TLS inside
the tunnel, as the API calls will. After a failure the later steps are skipped.
"""

import ipaddress
import logging
import ssl
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from defender import presets
from defender.services import alerts, auth
from defender.services.addresses import refuse_metadata
from defender.services.connection import ConnectionSettings, url_host
from defender.services.errors import DefenderError, PermissionMissing, ProxyFailed, TlsFailed, permission_advice
from defender.services.route import DIRECT, route_for
from defender.services.steps import PASSED, SKIPPED, Step, StepOutcome, TestResult, run_checks
from defender.services.trust import certificate_failure, tls_context, trust_for
from defender.services.tunnel import (
    Carrier,
    Channel,
    connect,
    handshake,
    http_connect,
    proxy_tls,
    resolve,
    socks_tunnel,
)

logger = logging.getLogger(__name__)

STEP_NAMES = ("DNS lookup", "TCP connection", "TLS handshake", "Token", "Permissions", "API call")

Outcome = tuple[StepOutcome, str]


def run_test(settings: ConnectionSettings) -> TestResult:
    return TestResult(tuple(iter_test_steps(settings)))


def iter_test_steps(settings: ConnectionSettings) -> Iterator[Step]:
    """Yield each Step as it finishes, so a page can show them one by one."""
    probe = _Probe(settings)
    checks = (probe.dns, probe.tcp, probe.tls, probe.token, probe.permissions, probe.api_call)
    try:
        yield from run_checks(zip(STEP_NAMES, checks, strict=True), settings.name or settings.host)
    finally:
        probe.close()


class _Probe:
    """The state the steps share: the road (direct or through a proxy), the open tunnel and the token."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.target = f"{url_host(settings.host)}:{settings.port}"
        self.addresses: list[tuple[str, int]] = []
        self.sock: Carrier | None = None
        self.token_value: auth.Token | None = None
        self.route = DIRECT  # decided in the DNS step, where a proxy the environment names is read

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # --- DNS ---------------------------------------------------------------------------------------------------

    def dns(self) -> Outcome:
        route = self.route = route_for(self.settings, self.settings.base_url)
        proxy = route.proxy
        name = proxy.host if proxy else self.settings.host
        port = proxy.port if proxy else self.settings.port
        source = f" (from {route.variable})" if route.variable else ""
        whose = f"The proxy {name}{source}" if proxy else name
        if proxy:
            # The proxy resolves the API host itself: refuse at least a host that names a metadata service.
            refuse_metadata(self.settings.host, [])
        if _is_ip(name):
            refuse_metadata(name, [name])
            self.addresses = [(name, port)]
            return PASSED, f"{whose} is an IP address; nothing to look up."
        self.addresses = resolve(name, port, self.settings.connect_timeout)
        # The form refused such names as typed; this catches a name that resolves there (DNS may say anything).
        refuse_metadata(name, [address for address, _ in self.addresses])
        shown = ", ".join(dict.fromkeys(address for address, _ in self.addresses))
        note = f" (the proxy looks up {self.settings.host} itself)" if proxy else ""
        return PASSED, f"{whose} resolves to {shown}{note}."

    # --- TCP (and the proxy's tunnel) --------------------------------------------------------------------------

    def tcp(self) -> Outcome:
        self.sock = self._open_route()
        route = self.route
        if route.proxy:
            return PASSED, f"Connected to the proxy {route.proxy_name}, which opened a tunnel to {self.target}."
        return PASSED, f"Connected to {self.target}."

    def _open_route(self) -> Carrier:
        """A socket that reaches host:port, directly or through the proxy's tunnel, within the connect timeout."""
        timeout = self.settings.connect_timeout
        route = self.route
        proxy = route.proxy
        if proxy is None:
            return connect(self.addresses, timeout, self.target)
        if proxy.proxy_type == "socks5":
            return socks_tunnel(route, self.settings.host, self.settings.port, timeout)
        sock: Carrier = connect(self.addresses, timeout, f"the proxy {route.proxy_name}")
        if proxy.proxy_type == "https":
            sock = proxy_tls(sock, route, trust_for(self.settings), timeout)
        try:
            answer = http_connect(sock, route, self.settings.host, self.settings.port, timeout)
        except DefenderError:
            sock.close()
            raise
        if answer.status == 200:
            return sock
        sock.close()
        if answer.status == 407:
            raise ProxyFailed(
                f"The proxy {route.proxy_name} rejected its credentials (407 Proxy Authentication Required).",
                route.check("username and password")
                if proxy.username or route.variable
                else "Set a username and password on the proxy rule.",
                code=407,
            )
        raise ProxyFailed(
            f"The proxy {route.proxy_name} refused to open a tunnel to {self.target} ({answer.status_line}).",
            "Check that the proxy allows this destination.",
            code=answer.status,
        )

    # --- TLS ---------------------------------------------------------------------------------------------------

    def tls(self) -> Outcome:
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
        assert sock is not None
        try:
            tls = handshake(
                sock, tls_context(verify), self.settings.host, self.settings.connect_timeout, self.target
            ).tls
        except ssl.SSLCertVerificationError as exc:
            issuer = self._issuer_of_presented_certificate()
            raise certificate_failure(
                self.settings.host, exc.verify_code or 0, exc.verify_message or "", issuer
            ) from None
        finally:
            sock.close()
        if verify is False:
            return PASSED, (
                f"Connected with {tls.version()}, but certificate verification is OFF: anyone in the path could pose "
                "as the API. Turn Verify TLS back on (and set a CA certificate if needed)."
            )
        certificate = tls.getpeercert() or {}
        not_after = certificate.get("notAfter")
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(not_after)), UTC)
        return PASSED, (
            f"The certificate for {self.settings.host} (issued by {_name(certificate.get('issuer'))}) is trusted and "
            f"valid until {expires:%Y-%m-%d}; {tls.version()}."
        )

    def _unverified_handshake(self) -> Channel:
        """A TLS handshake with the API's port over the same road, its certificate not checked."""
        sock = self._open_route()
        try:
            return handshake(sock, tls_context(False), self.settings.host, self.settings.connect_timeout, self.target)
        finally:
            sock.close()

    def _speaks_tls(self) -> bool:
        """Whether the API's port completes a TLS handshake (certificate not checked), over the same road."""
        try:
            self._unverified_handshake()
        except (OSError, ssl.SSLError, DefenderError):
            return False
        return True

    def _issuer_of_presented_certificate(self) -> str:
        """Who signed the certificate that failed, read over a second connection that does not verify."""
        try:
            der = self._unverified_handshake().tls.getpeercert(binary_form=True)
            issuer = x509.load_der_x509_certificate(der or b"").issuer
        except (OSError, ValueError, DefenderError):
            return ""
        names = {attribute.oid: str(attribute.value) for attribute in issuer}
        if NameOID.COMMON_NAME in names:
            return names[NameOID.COMMON_NAME]
        return ", ".join(
            names[oid] for oid in (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME) if oid in names
        )

    # --- token, permissions, API call --------------------------------------------------------------------------

    def token(self) -> Outcome:
        # A fresh token, so a permission granted a minute ago shows up in the next step.
        token = auth.acquire_token(self.settings, fresh=True)
        self.token_value = token
        host = auth.authority_url(self.settings).split("/")[2]
        return (
            PASSED,
            f"Entra ID at {host} issued a token for {token.audience} with {auth.credential_used(self.settings)}, "
            f"valid until {token.expires_at:%H:%M} UTC.",
        )

    def permissions(self) -> Outcome:
        required = presets.REQUIRED_ROLES[self.settings.flavour]
        if not required:
            return SKIPPED, "The legacy SIEM API takes no application roles; the API call below proves access."
        assert self.token_value is not None
        roles = set(self.token_value.roles)
        missing = [
            role for role in required if role not in roles and role.replace(".Read.", ".ReadWrite.") not in roles
        ]
        if missing:
            has = f" (it has {', '.join(sorted(roles))})" if roles else " (it has no application roles)"
            raise PermissionMissing(
                f"The token lacks {' and '.join(missing)}{has}.", permission_advice(self.settings.flavour, missing)
            )
        holds = f"The token holds {', '.join(required)}."
        hunting = presets.HUNTING_ROLES.get(self.settings.flavour)
        if hunting and hunting not in roles:
            # Alerts work without it; only the outcome engine's telemetry check (Detected) needs it.
            return PASSED, (
                f"{holds} It lacks {hunting}: detection outcomes cannot check telemetry, so a procedure without "
                f"an alert cannot be Detected. {permission_advice(self.settings.flavour, [hunting])}"
            )
        return PASSED, f"{holds} With {hunting}, detection outcomes check telemetry too." if hunting else holds

    def api_call(self) -> Outcome:
        probe: Callable[[ConnectionSettings], str] = alerts.probe_api  # its signature; alerts is not annotated yet
        return PASSED, probe(self.settings)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def _name(rdns: object) -> str:
    """A distinguished name from ssl.getpeercert() as people read it: its common name, else its organisation."""
    fields: dict[str, str] = {}
    for rdn in rdns if isinstance(rdns, tuple) else ():
        for key, value in rdn:
            fields.setdefault(key, value)
    if "commonName" in fields:
        return fields["commonName"]
    return ", ".join(fields[key] for key in ("organizationName", "organizationalUnitName") if key in fields) or "?"
