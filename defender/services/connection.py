"""The plain settings a service call needs, built from an Integration (or from a form, or a remote job).

Secrets are fields with ``repr=False``: a settings object can be logged or shown in a traceback without leaking them.
"""

from dataclasses import dataclass, field


def bare_host(host):
    """The host without the brackets an IPv6 address may be typed with ([2001:db8::1] -> 2001:db8::1)."""
    host = (host or "").strip()
    if host.startswith("[") and host.endswith("]") and ":" in host:
        return host[1:-1]
    return host


def url_host(host):
    """The host as it goes into a URL or a host:port text: an IPv6 address in brackets."""
    host = bare_host(host)
    return f"[{host}]" if ":" in host else host


def split_host_list(text):
    """Hosts typed one per line or comma-separated, as a tuple without blanks."""
    return tuple(entry.strip() for entry in (text or "").replace(",", "\n").splitlines() if entry.strip())


@dataclass(frozen=True)
class ProxySettings:
    proxy_type: str  # "http", "https" or "socks5"
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    ca_certificate: str = field(default="", repr=False)
    bypass_hosts: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "host", bare_host(self.host))

    @property
    def address(self):
        """host:port, for messages."""
        return f"{url_host(self.host)}:{self.port}"

    def url(self, with_credentials=True):
        """The proxy URL in the form requests expects (socks5h resolves names at the proxy, like a browser)."""
        from urllib.parse import quote

        scheme = {"http": "http", "https": "https", "socks5": "socks5h"}[self.proxy_type]
        auth = ""
        if with_credentials and self.username:
            auth = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}@"
        return f"{scheme}://{auth}{url_host(self.host)}:{self.port}"

    def bypasses(self, hostname):
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


@dataclass(frozen=True)
class ConnectionSettings:
    flavour: str  # presets.MDE, presets.GRAPH or presets.SIEM
    host: str
    client_id: str
    tenant_id: str
    auth_url: str
    client_secret: str = field(default="", repr=False)
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

    def __post_init__(self):
        # An IPv6 host may be typed with or without brackets; it is kept without, and bracketed where URLs need it.
        object.__setattr__(self, "host", bare_host(self.host))

    @property
    def base_url(self):
        default_port = {"https": 443, "http": 80}[self.protocol]
        host = url_host(self.host)
        netloc = host if self.port == default_port else f"{host}:{self.port}"
        return f"{self.protocol}://{netloc}"
