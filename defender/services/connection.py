"""The plain settings a service call needs, built from an Integration (or from a form, or a remote job).

Secrets are fields with ``repr=False``: a settings object can be logged or shown in a traceback without leaking them.
"""

from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit

from defender import presets
from defender.enums import ApiFlavour

API_NAMES = {presets.MDE: "Defender", presets.GRAPH: "Microsoft Graph", presets.SIEM: "The SIEM API"}


def bare_host(host: str | None) -> str:
    """The host without the brackets an IPv6 address may be typed with ([2001:db8::1] -> 2001:db8::1)."""
    host = (host or "").strip()
    if host.startswith("[") and host.endswith("]") and ":" in host:
        return host[1:-1]
    return host


def url_host(host: str | None) -> str:
    """The host as it goes into a URL or a host:port text: an IPv6 address in brackets."""
    host = bare_host(host)
    return f"[{host}]" if ":" in host else host


def split_host_list(text: str | None) -> tuple[str, ...]:
    """Hosts typed one per line or comma-separated, as a tuple without blanks."""
    return tuple(entry.strip() for entry in (text or "").replace(",", "\n").splitlines() if entry.strip())


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL; raises ValueError for an impossible port."""
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port(parts.scheme)


def url_hostname(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def target(url: str) -> str:
    """host:port of a URL for messages, IPv6 in brackets; what there is of it when the URL is malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port or default_port(parts.scheme)
    except ValueError:
        return url_host(url_hostname(url)) or "the server"
    return f"{url_host(parts.hostname or '')}:{port}"


@dataclass(frozen=True)
class ProxySettings:
    proxy_type: str  # "http", "https" or "socks5"
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    ca_certificate: str = field(default="", repr=False)
    bypass_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", bare_host(self.host))

    @property
    def address(self) -> str:
        """host:port, for messages."""
        return f"{url_host(self.host)}:{self.port}"

    def url(self, with_credentials: bool = True) -> str:
        """The proxy URL in the form requests expects (socks5h resolves names at the proxy, like a browser)."""
        scheme = {"http": "http", "https": "https", "socks5": "socks5h"}[self.proxy_type]
        auth = ""
        if with_credentials and self.username:
            auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{url_host(self.host)}:{self.port}"

    def bypasses(self, hostname: str) -> bool:
        """True when hostname matches an entry of the bypass list (exact, or a suffix given as .example.com)."""
        hostname = hostname.lower().rstrip(".")
        for entry in self.bypass_hosts:
            entry = entry.lower().strip().rstrip(".")
            if not entry:
                continue
            if (
                entry == "*"
                or hostname == entry.lstrip("*.")
                or (entry.startswith((".", "*.")) and hostname.endswith("." + entry.lstrip("*.")))
            ):
                return True
        return False


class Reach(Protocol):
    """What a transport needs to reach a server: timeouts, trust, a proxy rule, and who answers where."""

    @property
    def connect_timeout(self) -> float: ...

    @property
    def read_timeout(self) -> float: ...

    @property
    def verify_tls(self) -> bool: ...

    @property
    def ca_certificate(self) -> str: ...

    @property
    def proxy(self) -> ProxySettings | None: ...

    def answered_by(self, url: str) -> tuple[str, str]:
        """Who answered ``url``, for a message, and which setting to check when the answer was a redirect."""
        ...

    def __hash__(self) -> int: ...  # transports keep a session per settings


@dataclass(frozen=True)
class ConnectionSettings:
    flavour: ApiFlavour  # a plain string ("mde") is taken too, and checked
    host: str
    client_id: str
    tenant_id: str
    auth_url: str
    client_secret: str = field(default="", repr=False)
    # The PEM of the app's private key and certificate, when the integration signs in with a certificate instead.
    client_certificate: str = field(default="", repr=False)
    port: int = 443
    protocol: str = "https"
    api_version: str = "v1.0"
    resource: str = ""
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    verify_tls: bool = True
    ca_certificate: str = field(default="", repr=False)
    max_retries: int = 3
    page_size: int = 1000
    lookback_hours: int = 24
    clock_skew_seconds: int = 300
    proxy: ProxySettings | None = None
    name: str = ""  # the integration's name, for messages
    integration_id: int | None = None
    # The cloud the tenant lives in (commercial, gcc, gcc-high, dod): GCC High and DoD share an API host, so only
    # this tells their portals apart. "" reads it from the host.
    cloud: str = ""
    # Graph only: every Defender product's alerts, not only Defender for Endpoint's.
    graph_all_products: bool = False
    # The call budget of this app and tenant (the smallest set on the integrations sharing it); None: Microsoft's.
    calls_per_minute: int | None = None
    calls_per_hour: int | None = None

    def __post_init__(self) -> None:
        # An IPv6 host may be typed with or without brackets; it is kept without, and bracketed where URLs need it.
        object.__setattr__(self, "host", bare_host(self.host))
        object.__setattr__(self, "flavour", ApiFlavour(self.flavour))

    @property
    def uses_certificate(self) -> bool:
        return bool(self.client_certificate)

    @property
    def base_url(self) -> str:
        host = url_host(self.host)
        netloc = host if self.port == default_port(self.protocol) else f"{host}:{self.port}"
        return f"{self.protocol}://{netloc}"

    def answered_by(self, url: str) -> tuple[str, str]:
        """Who answered url (Entra ID, the API, or just the host and port), and which setting to check."""
        where = target(url)
        try:
            answered = origin(url)
            to_auth = bool(self.auth_url) and answered == origin(self.auth_url.strip())
            to_api = answered == origin(self.base_url)
        except ValueError:
            to_auth = to_api = False
        api = API_NAMES.get(self.flavour)
        if to_auth and not to_api:
            return f"Entra ID at {where}", (
                "Check the Auth URL: it must be the sign-in host itself (such as https://login.microsoftonline.com), "
                "not an address that forwards to it."
            )
        if to_api and not to_auth and api:
            return f"{api} at {where}", (
                "Check the Host, Port and Protocol: they must be the API's own, not an address that forwards to it."
            )
        if to_api and to_auth:
            return where, "Check the Host and the Auth URL: each must be the service's own address, not a forward."
        return where, "Use the service's own address, not one that forwards to it."
