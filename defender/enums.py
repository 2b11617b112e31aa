"""The names the site, the services and the node wire share: API flavours, proxy types and job kinds.

Plain ``StrEnum``s, so that the services (which import no Django) can use them and a member still compares equal to
the text stored in the database and sent over the wire. The models build their ``choices`` from them with
:func:`choices`. A Test step's outcome and a Test's verdict are enums of the step runner itself
(``defender.services.steps.StepOutcome`` and ``Verdict``).
"""

from enum import StrEnum


class ApiFlavour(StrEnum):
    """Which Microsoft API an integration reads alerts from."""

    MDE = "mde"
    GRAPH = "graph"
    SIEM = "siem"

    @property
    def label(self) -> str:
        return _FLAVOUR_LABELS[self]


class ProxyType(StrEnum):
    """How a proxy rule's proxy is spoken to: HTTP and HTTPS tunnel with CONNECT, SOCKS5 resolves names itself."""

    HTTP = "http"
    HTTPS = "https"
    SOCKS5 = "socks5"

    @property
    def label(self) -> str:
        return _PROXY_LABELS[self]


class JobKind(StrEnum):
    """What a remote node is asked to do; the same text names it in the Job table and on the node wire."""

    TEST = "test"
    ALERTS = "alerts"

    @property
    def label(self) -> str:
        return _JOB_LABELS[self]


_FLAVOUR_LABELS = {
    ApiFlavour.MDE: "Defender for Endpoint API",
    ApiFlavour.GRAPH: "Microsoft Graph",
    ApiFlavour.SIEM: "Legacy SIEM API",
}
_PROXY_LABELS = {ProxyType.HTTP: "HTTP", ProxyType.HTTPS: "HTTPS", ProxyType.SOCKS5: "SOCKS5"}
_JOB_LABELS = {JobKind.TEST: "Test", JobKind.ALERTS: "Get alerts"}


def choices(names: type[ApiFlavour] | type[ProxyType] | type[JobKind]) -> list[tuple[str, str]]:
    """(value, label) for each member, in order: a model field's ``choices``."""
    return [(member.value, member.label) for member in names]
