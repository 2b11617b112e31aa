"""Which road a connection takes, decided once for the API calls, the Test and the proxy Test: directly, through the
integration's proxy rule, or (without a rule) through the proxy the environment names, as requests would choose it:
HTTPS_PROXY (or HTTP_PROXY for plain HTTP), else ALL_PROXY, lower case first, unless NO_PROXY names the host."""

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from defender.services.connection import ProxySettings, Reach, default_port, url_host
from defender.services.errors import ProxyFailed

# The schemes a proxy in the environment may have, as the proxy types of a rule.
ENVIRONMENT_SCHEMES = {"http": "http", "https": "https", "socks5": "socks5", "socks5h": "socks5"}
DEFAULT_PROXY_PORTS = {"http": 80, "https": 443, "socks5": 1080}


@dataclass(frozen=True)
class Route:
    proxy: ProxySettings | None = None
    variable: str = ""  # the environment variable the proxy came from; "" for a proxy rule

    @property
    def proxy_name(self) -> str:
        """host:port of the proxy, and where it came from when that was the environment."""
        if self.proxy is None:
            return ""
        return f"{self.proxy.address} (from {self.variable})" if self.variable else self.proxy.address

    def check(self, what: str) -> str:
        """Advice to check ``what`` ("host and port", "username and password") where this proxy is set."""
        if self.variable:
            return f"Check the {what} in {self.variable} in this site's environment."
        return f"Check the {what} of the proxy rule."

    def proxies(self) -> dict[str, str]:
        """The ``proxies=`` requests takes for this road."""
        if self.proxy is None:
            return {}
        url = self.proxy.url()
        return {"http": url, "https": url}


DIRECT = Route()


def route_for(settings: Reach, url: str) -> Route:
    """The road to ``url``: the proxy rule unless the host is on its bypass list; without a rule, the environment's."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or default_port(parts.scheme)
    except ValueError:
        return DIRECT  # the request itself fails, saying the URL is wrong
    rule = settings.proxy
    if rule is not None:
        return DIRECT if rule.bypasses(host) else Route(rule)
    return environment_route(parts.scheme, host, port)


def environment_route(scheme: str, host: str, port: int) -> Route:
    if not host or _bypassed(host, port, _variable("no")[1]):
        return DIRECT
    for kind in (scheme, "all"):
        variable, value = _variable(kind)
        if value:
            return Route(_proxy_from(variable, value), variable)
    return DIRECT


def _variable(kind: str) -> tuple[str, str]:
    """(name, value) of the ``kind``_proxy variable; the lower-case one wins, even when it is empty."""
    for name in (f"{kind}_proxy", f"{kind.upper()}_PROXY"):
        if name in os.environ:
            return name, os.environ[name].strip()
    return "", ""


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether NO_PROXY names the host: an address or network for an IP address, a name or domain suffix else."""
    if not no_proxy:
        return False
    entries = [entry for entry in no_proxy.replace(" ", "").split(",") if entry]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        for entry in entries:
            try:
                if address in ipaddress.ip_network(entry.strip("[]"), strict=False):
                    return True
            except ValueError:
                continue
    # Names as urllib reads NO_PROXY: "*" for every host; a name, or a domain (leading dot or not) and its
    # subdomains, either with the port or without.
    hostname, with_port = host.lower(), f"{url_host(host)}:{port}".lower()
    for entry in entries:
        name = entry.lstrip(".").lower()
        if (
            entry == "*"
            or name in (hostname, with_port)
            or hostname.endswith(f".{name}")
            or with_port.endswith(f".{name}")
        ):
            return True
    return False


def _proxy_from(variable: str, value: str) -> ProxySettings:
    """The proxy a variable names (a URL, or host:port meaning an HTTP proxy); its text never goes into a message,
    since it may hold a password."""
    parts = urlsplit(value if "://" in value else f"http://{value}")
    proxy_type = ENVIRONMENT_SCHEMES.get(parts.scheme.lower())
    if proxy_type is None:
        raise ProxyFailed(
            f"{variable} names a {parts.scheme[:20]} proxy, which this console does not speak.",
            "Use an http://, https:// or socks5:// proxy there, or assign a proxy rule to the integration.",
        )
    try:
        port = parts.port or DEFAULT_PROXY_PORTS[proxy_type]
    except ValueError:
        port = 0
    if not parts.hostname or not port:
        raise ProxyFailed(
            f"{variable} in this site's environment is not a proxy address this console can read.",
            "Set it to a URL such as http://proxy.example.com:3128.",
        )
    return ProxySettings(
        proxy_type, parts.hostname, port, username=unquote(parts.username or ""), password=unquote(parts.password or "")
    )
