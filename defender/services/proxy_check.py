"""The Test of a proxy rule: does the proxy answer, accept its credentials, and open tunnels where its integrations go?

The same road as the integration Test's network steps (services.tunnel: one CONNECT, PySocks for SOCKS5, the same
trust for an HTTPS proxy's certificate): the point is to show which of the three fails. Every socket operation is
bounded by the timeout, so a proxy that never answers fails within it.
"""

from collections.abc import Iterable, Iterator

from defender.services.connection import ProxySettings, url_host
from defender.services.errors import ProxyFailed, socks_credentials_failure
from defender.services.route import Route
from defender.services.steps import PASSED, SKIPPED, Step, StepOutcome, TestResult, run_checks
from defender.services.trust import trust_for_proxy
from defender.services.tunnel import (
    Carrier,
    ConnectAnswer,
    Stage,
    TunnelFailed,
    connect,
    http_connect,
    proxy_tls,
    socks_tunnel,
)

# Where the tunnel is asked to go when no integration uses the rule yet: the sign-in host every integration needs first.
PROBE_TARGET = ("login.microsoftonline.com", 443)
# For each socket operation; the whole check takes at most a few of these.
TIMEOUT = 5.0
STEP_NAMES = ("Connection to the proxy", "Proxy credentials", "Tunnel")

Outcome = tuple[StepOutcome, str]


def check_proxy(proxy: ProxySettings, timeout: float = TIMEOUT, targets: Iterable[tuple[str, int]] = ()) -> TestResult:
    """Run the three steps against ``proxy``; a TestResult with one Step each."""
    return TestResult(tuple(iter_proxy_steps(proxy, timeout, targets)))


def iter_proxy_steps(
    proxy: ProxySettings, timeout: float = TIMEOUT, targets: Iterable[tuple[str, int]] = ()
) -> Iterator[Step]:
    """Yield each Step as it finishes. ``targets`` are the (host, port) pairs the tunnel is asked for, in order: the
    hosts the rule's integrations reach through it (an isolated lab's proxy may reach only those); Entra ID's public
    sign-in host when there are none."""
    destinations = list(dict.fromkeys(targets)) or [PROBE_TARGET]
    probe = _ProxyProbe(proxy, timeout, destinations[0])

    def tunnels() -> Outcome:
        opened = [probe.open_tunnel()]
        for destination in destinations[1:]:
            # An HTTP proxy opens one tunnel per connection: each further destination gets a connection of its own.
            extra = _ProxyProbe(proxy, timeout, destination)
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
    def __init__(self, proxy: ProxySettings, timeout: float, target: tuple[str, int]) -> None:
        self.proxy = proxy
        self.route = Route(proxy)
        self.timeout = timeout
        self.target_host, self.target_port = target
        self.destination = f"{url_host(self.target_host)}:{self.target_port}"
        self.name = proxy.address
        self.sock: Carrier | None = None
        self.answer: ConnectAnswer | None = None  # the HTTP proxy's answer to CONNECT, read during authenticate
        self.socks_failure: TunnelFailed | None = None  # where a SOCKS5 tunnel broke, told by the step it belongs to

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def connect(self) -> Outcome:
        if self.proxy.proxy_type == "socks5":
            return self._socks_connect()
        self.sock = connect([(self.proxy.host, self.proxy.port)], self.timeout, f"the proxy {self.name}")
        if self.proxy.proxy_type == "https":
            self.sock = proxy_tls(self.sock, self.route, trust_for_proxy(self.proxy), self.timeout)
            return PASSED, f"Connected to {self.name} over TLS; its certificate is trusted."
        return PASSED, f"Connected to {self.name}."

    def authenticate(self) -> Outcome:
        if self.proxy.proxy_type == "socks5":
            return self._socks_authenticate()
        assert self.sock is not None
        self.answer = http_connect(self.sock, self.route, self.target_host, self.target_port, self.timeout)
        if self.answer.status == 407:
            advice = "Check the username and password." if self.proxy.username else "Set a username and password."
            raise ProxyFailed(f"The proxy {self.name} rejected its credentials (407).", advice)
        if not self.proxy.username:
            return SKIPPED, "The proxy rule has no credentials, and the proxy asked for none."
        return PASSED, f"The proxy {self.name} accepted the credentials of {self.proxy.username}."

    def open_tunnel(self) -> str:
        """Ask for the tunnel to the target; its host:port once open, else ProxyFailed naming it."""
        if self.proxy.proxy_type == "socks5":
            if self.socks_failure is not None:
                raise self.socks_failure
            return self.destination
        assert self.answer is not None
        if self.answer.status == 200:
            return self.destination
        raise ProxyFailed(
            f"The proxy answered CONNECT {self.destination} with {self.answer.status_line or 'nothing'}.",
            "Check that the proxy allows this destination and can reach the internet.",
        )

    # --- SOCKS5: PySocks greets, authenticates and asks for the tunnel at once; each step tells its part --------

    def _socks_connect(self) -> Outcome:
        if socks_credentials_failure(self.proxy) is not None:
            # Credentials that cannot be sent are never tried: show only that the proxy answers.
            self.sock = connect([(self.proxy.host, self.proxy.port)], self.timeout, f"the proxy {self.name}")
            return PASSED, f"Connected to {self.name}."
        try:
            self.sock = socks_tunnel(self.route, self.target_host, self.target_port, self.timeout)
        except TunnelFailed as failure:
            if failure.stage == Stage.REACH:
                raise
            self.socks_failure = failure
        return PASSED, f"Connected to {self.name}."

    def _socks_authenticate(self) -> Outcome:
        failure = socks_credentials_failure(self.proxy)
        if failure is not None:
            raise failure
        if self.socks_failure is not None and self.socks_failure.stage == Stage.CREDENTIALS:
            raise self.socks_failure
        if not self.proxy.username:
            return SKIPPED, "The SOCKS proxy asked for no credentials."
        return PASSED, f"The SOCKS proxy {self.name} accepted the credentials of {self.proxy.username}."
