"""The alerts Defender raised on one actor in a time window, from any of the three API flavours, as one Alert type.

The Defender for Endpoint API cannot filter alerts by host name, so the machine is looked up first (by name, or by IP
address through lastIpAddress and findbyip) and its alerts read by machine ID, with their evidence. Graph is narrowed
at the server to Defender for Endpoint's alerts and filtered on the host here; the SIEM exporter sends detections,
several per alert, which are grouped into one alert each.

The window is about activity, not creation: Defender merges later detections into an existing alert and keeps
updating it. Each flavour is asked for what was updated since the window's start, and the alerts whose activity (first
to last event) overlaps the window are kept.

Every field of every answer is read as untrusted: text that is an object, a list, a number, null or huge becomes text
of the column's size (or nothing), and an alert without a usable ID (or that is not an object at all) is skipped and
counted in the message. One odd alert never costs the others. Sources: docs/microsoft-api.md.
"""

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote

from defender import presets
from defender.services.auth import api_client
from defender.services.connection import ConnectionSettings
from defender.services.errors import ApiFailed, NotFound, Throttled
from defender.services.untrusted import identifier, moment, text, text_list

# Alert ids are URL-safe (da638…_-1234); quoting them anyway costs a tenth of the whole fetch on 10,000 alerts.
URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*\Z")
SEVERITIES = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High"}
STATUSES = {"new": "New", "inprogress": "InProgress", "in_progress": "InProgress", "resolved": "Resolved"}
# The sizes of defender.models.Alert's columns (the services import no models; a test keeps the two in step).
ID_LENGTH = 200
TITLE_LENGTH = 500
CATEGORY_LENGTH = SOURCE_LENGTH = 100
MACHINE_NAME_LENGTH = 253
URL_LENGTH = 2000
# A MITRE technique ID is at most nine characters (T1059.001); an alert names a handful.
TECHNIQUE_LENGTH = 20
MOST_TECHNIQUES = 50
# The sizes of the newer fields and of one evidence entity. A Windows command line is at most 32,767 characters; the
# first 8,192 are what an operator reads. Hashes are hex (SHA-256: 64), a user is DOMAIN\account or a UPN.
NAME_LENGTH = 256  # assigned to, threat family and name, classification, product, a file or process name
PATH_LENGTH = 1024
COMMAND_LINE_LENGTH = 8192
HASH_LENGTH = 128
USER_LENGTH = 320
ADDRESS_LENGTH = 64
STATUS_LENGTH = 50
# An alert keeps at most this many evidence entities (an MDE alert has a handful, a SIEM alert one per detection);
# the raw JSON it keeps is cut to the same number, which is what bounds its size.
MOST_EVIDENCE = 100
# Graph's security API: at most 1,000 per page ($top) and $skip at most 500, so paging follows @odata.nextLink only;
# 150 requests a minute per app per tenant for alerts (docs/microsoft-api.md, section 7).
GRAPH_MAX_TOP = 1000
GRAPH_RATE = "Microsoft Graph allows 150 requests a minute per app and tenant for security alerts."
GRAPH_MDE_SOURCE = "microsoftDefenderForEndpoint"
# Graph adds enum members after v1.0 shipped (securityTesting, ...) and sends "unknownFutureValue" for them unless
# asked for the evolvable members by name (Graph's "evolvable enumerations").
GRAPH_HEADERS = {"Prefer": "include-unknown-enum-members"}
# The portal of each US Government cloud (Defender for Endpoint "US Government" page). GCC High and DoD share their
# API host, so only the integration's cloud tells them apart.
PORTALS = {
    "commercial": "https://security.microsoft.com",
    "gcc": "https://security.microsoft.com",
    "gcc-high": "https://security.microsoft.us",
    "dod": "https://security.apps.mil",
}
COMMERCIAL_PORTAL = "https://security.microsoft.com"
# findbyip searches 15 minutes either side of a moment within the past 30 days.
FIND_BY_IP_RANGE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One entity of an alert's evidence, in one spelling whatever the flavour ("" where it does not apply)."""

    entity_type: str = ""  # Process, File, User, Ip, Url, Device, Mailbox, ... (MDE's entityType spelling)
    process_name: str = ""
    command_line: str = ""
    parent_process: str = ""  # the parent process's file name
    file_name: str = ""
    file_path: str = ""  # the folder, without the file name, as Defender sends it
    sha1: str = ""
    sha256: str = ""
    md5: str = ""  # the SIEM exporter's only
    user: str = ""  # DOMAIN\account, else the user principal name or e-mail address
    ip_address: str = ""
    url: str = ""
    detection_status: str = ""  # Detected, Blocked or Prevented
    remediation_status: str = ""  # Graph: None, Remediated, Prevented, Blocked, NotFound; SIEM: its action and outcome
    was_executing: bool | None = None  # the SIEM exporter's WasExecutingWhileDetected; None when not sent


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    title: str
    severity: str  # Informational, Low, Medium, High or Unspecified
    status: str  # New, InProgress, Resolved, or Unknown: not reported (the SIEM exporter sends no status)
    category: str
    detection_source: str  # Graph's detectionSource spelling for every flavour (antivirus, customDetection, ...)
    created: datetime | None
    first_event: datetime | None
    last_event: datetime | None
    machine_name: str  # as Defender reports it
    matched_name: str  # which of the actor's names matched it
    mitre_techniques: tuple[str, ...]
    portal_url: str
    raw: dict[str, Any] = field(repr=False, compare=False, hash=False)
    # Fields added later keep defaults, so that values built without them still work.
    incident_id: str = ""
    incident_url: str = ""
    device_id: str = ""  # Defender for Endpoint's machine ID
    threat_family: str = ""
    threat_name: str = ""
    detector_id: str = ""
    classification: str = ""  # TruePositive, InformationalExpectedActivity, FalsePositive (MDE's spelling)
    determination: str = ""  # e.g. SecurityTesting, Malware (MDE's spelling)
    assigned_to: str = ""
    last_update: datetime | None = None
    resolved: datetime | None = None
    service_source: str = ""  # Graph's serviceSource spelling: microsoftDefenderForEndpoint, ...
    product_name: str = ""
    evidence: tuple[Evidence, ...] = ()


class Window(NamedTuple):
    since: datetime
    until: datetime


@dataclass(frozen=True)
class AlertsResult:
    alerts: list[Alert]  # newest first
    tried_names: tuple[str, ...]
    window: Window  # as asked for, widened by the clock-skew tolerance
    message: str  # one sentence for the person looking at the table; the window is said next to it


def api_prefix(settings: Any) -> str:
    """Where the flavour's API lives on its host: /api[/v1.0] for Defender, /{version} for Graph, /api for SIEM."""
    if settings.flavour == presets.MDE:
        return f"/api/{settings.api_version}" if settings.api_version else "/api"
    if settings.flavour == presets.GRAPH:
        return f"/{settings.api_version or 'v1.0'}"
    return "/api"


def probe_path(settings: Any) -> tuple[str, dict[str, int]]:
    """The path and parameters of the cheapest call that proves the token is accepted: one alert at most."""
    if settings.flavour == presets.GRAPH:
        return f"{api_prefix(settings)}/security/alerts_v2", {"$top": 1}
    if settings.flavour == presets.SIEM:
        return "/api/alerts", {"limit": 1}
    return f"{api_prefix(settings)}/alerts", {"$top": 1}


def probe_api(settings: Any) -> str:
    """Make the cheap call and say what came back; raises a DefenderError (401, 403, ...) otherwise."""
    path, params = probe_path(settings)
    api = api_client(settings)
    headers = GRAPH_HEADERS if settings.flavour == presets.GRAPH else None
    data = api.get_json(api.url(path), params, headers=headers)
    items = data if isinstance(data, list) else (data.get("value") if isinstance(data, dict) else None)
    count = len(items) if isinstance(items, list) else 0
    return f"GET {path} answered 200 with {count} alert{'' if count == 1 else 's'}."


def alerts_for_actor(
    settings: ConnectionSettings,
    hostnames: Iterable[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> AlertsResult:
    """The alerts active on the machine known by any of ``hostnames`` between since and until (default: the
    integration's lookback window ending now), widened on both sides by the clock-skew tolerance."""
    names = tuple(dict.fromkeys(name.strip().rstrip(".") for name in hostnames if name and name.strip()))
    until = _aware(until) or datetime.now(UTC)
    since = _aware(since) or until - timedelta(hours=settings.lookback_hours)
    skew = timedelta(seconds=settings.clock_skew_seconds)
    window = Window(since - skew, until + skew)
    api = api_client(settings)
    fetch = {presets.MDE: _mde_alerts, presets.GRAPH: _graph_alerts, presets.SIEM: _siem_alerts}[settings.flavour]
    alerts, message = fetch(api, settings, names, window)
    alerts.sort(key=_newest_first)
    return AlertsResult(alerts, names, window, message)


def _newest_first(alert: Alert) -> float:
    return -(alert.created.timestamp() if alert.created else float("-inf"))


def active_in(alert: Alert, window: Window, last_update_is_activity: bool = False) -> bool:
    """Whether the alert's activity, from its first to its last event, overlaps the window. Creation stands in for
    a missing event time, and for the SIEM exporter (which sends no event times) its last processing time stands in
    for the last activity, as Microsoft's migration guide maps it. An alert with no time it can be judged by is kept,
    since the server already chose it."""
    times = [when for when in (alert.first_event, alert.created, alert.last_event) if when is not None]
    if last_update_is_activity and alert.last_update is not None:
        times.append(alert.last_update)
    if not times:
        return True
    return min(times) <= window.until and max(times) >= window.since


def same_host(wanted: str, reported: str) -> bool:
    """A short name and its FQDN name the same host (ws-fin-07 ~ ws-fin-07.corp.contoso.com); two FQDNs must be
    equal. Case-insensitive; IP addresses match only themselves."""
    wanted, reported = wanted.lower().rstrip("."), reported.lower().rstrip(".")
    if wanted == reported:
        return True
    if _is_ip(wanted) or _is_ip(reported) or ("." in wanted and "." in reported):
        return False
    return wanted.split(".", 1)[0] == reported.split(".", 1)[0]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _matching_name(names: tuple[str, ...], reported: str) -> str | None:
    return next((name for name in names if same_host(name, reported)), None)


def _matching_address(names: tuple[str, ...], addresses: object) -> str | None:
    """The first of ``names`` that is an IP address in ``addresses`` (a list of text), else None."""
    if not isinstance(addresses, list):
        return None
    known = {_normal_ip(item) for item in addresses if type(item) is str}
    return next((name for name in names if _is_ip(name) and _normal_ip(name) in known), None)


def _normal_ip(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return ""


def _address_list(row: Mapping[str, Any]) -> list[str]:
    """A SIEM detection's internal IP addresses: InternalIPv4List and InternalIPv6List are lists in one text."""
    listed = f"{text(row.get('InternalIPv4List'), URL_LENGTH)},{text(row.get('InternalIPv6List'), URL_LENGTH)}"
    return [item for item in re.split(r"[,;\s]+", listed) if item]


def _either(names: tuple[str, ...]) -> str:
    return " or ".join(names) if names else "(no host name)"


def describe_window(window: Window, clock_skew_seconds: int) -> str:
    """The window Defender was asked for, as the person asked for it, with the clock-skew tolerance said once."""
    skew = timedelta(seconds=clock_skew_seconds)
    since, until = window.since + skew, window.until - skew
    tolerance = f" (± {clock_skew_text(clock_skew_seconds)} clock-skew tolerance)" if skew else ""
    return f"between {since:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC{tolerance}"


def clock_skew_text(seconds: int) -> str:
    """A clock-skew tolerance in the words the console uses for it: "5 min", "90 s"."""
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _odata_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def portal_origin(settings: Any) -> str:
    """The Defender portal of the integration's cloud: from its cloud when it names one, else from the API host."""
    cloud = getattr(settings, "cloud", "") or ""
    if cloud in PORTALS:
        return PORTALS[cloud]
    host = settings.host.lower()
    if host.startswith("api-gcc."):
        return PORTALS["gcc"]
    return PORTALS["gcc-high"] if host.endswith(".microsoft.us") else COMMERCIAL_PORTAL


# --- Defender for Endpoint ----------------------------------------------------------------------------------------


def _mde_machines(
    api: Any, settings: Any, names: tuple[str, ...], window: Window
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """{machine id: (computerDnsName, matched name)} for the actor's names, first match wins, and what was searched.

    A name is searched by its short name (startswith finds the FQDN and the bare name; same_host then drops
    ws-fin-071 for ws-fin-07); an IP address by lastIpAddress, then by findbyip around the window's end."""
    prefix = api_prefix(settings)
    machines: dict[str, tuple[str, str]] = {}
    searched: list[str] = []
    for name in names:
        if _is_ip(name):
            searched.append(f"IP address {name}")
            found = _machines_by_ip(api, settings, name, window)
        else:
            # Defender reports computer names in lower case, and its text comparisons may be case-sensitive (Microsoft
            # does not say): the short name is sent in lower case.
            short = name.split(".", 1)[0].lower()
            searched.append(f"{short}*")
            query = {"$filter": f"startswith(computerDnsName,{_odata_string(short)})"}
            found = _listed(api, f"{prefix}/machines", query, settings.page_size)
        for machine in found:
            if not isinstance(machine, dict):
                continue
            machine_id = identifier(machine.get("id"), ID_LENGTH)
            reported = text(machine.get("computerDnsName"), MACHINE_NAME_LENGTH)
            by_ip = _is_ip(name)
            if machine_id and machine_id not in machines and (by_ip or (reported and same_host(name, reported))):
                machines[machine_id] = (reported or name, name)
    return machines, searched


def _listed(api: Any, path: str, params: dict[str, Any], page_size: int | None) -> list[Any]:
    try:
        return list(api.iter_items(path, params, page_size))
    except NotFound:
        return []  # the machines API answers 404 when no recently seen machine matches


def _machines_by_ip(api: Any, settings: Any, address: str, window: Window) -> list[Any]:
    prefix = api_prefix(settings)
    found = _listed(api, f"{prefix}/machines", {"$filter": f"lastIpAddress eq {_odata_string(address)}"}, None)
    if found:
        return found
    # Not the last IP any more: findbyip finds the machines seen with it 15 minutes either side of a moment in the
    # past 30 days (older moments are a 400).
    now = datetime.now(UTC)
    at = min(window.until, now)
    if at < now - FIND_BY_IP_RANGE:
        return []
    path = f"{prefix}/machines/findbyip(ip={_odata_string(address)},timestamp={_odata_time(at)})"
    try:
        return _listed(api, path, {}, None)
    except ApiFailed as failure:
        if failure.code == 400:
            return []
        raise


def _mde_alerts(api: Any, settings: Any, names: tuple[str, ...], window: Window) -> tuple[list[Alert], str]:
    machines, searched = _mde_machines(api, settings, names, window)
    if not machines:
        names_searched = [item for item in searched if not item.startswith("IP address ")]
        addresses = [item for item in searched if item.startswith("IP address ")]
        parts = [f"computer names {', '.join(names_searched)}"] if names_searched else []
        parts += [", ".join(addresses)] if addresses else []
        return [], f"No machine named {_either(names)} is known to Defender (searched {'; '.join(parts)})."
    portal = portal_origin(settings)
    # Defender keeps updating an alert as detections merge into it: ask for what was updated since the window's
    # start, keep what was active in it.
    time_filter = f"lastUpdateTime ge {_odata_time(window.since)}"
    prefix = api_prefix(settings)
    alerts: list[Alert] = []
    unreadable = 0
    without_evidence = False
    for machine_id, (reported, matched) in machines.items():
        path = f"{prefix}/machines/{quote(machine_id, safe='')}/alerts"
        # Each page is read while Defender prepares the next.
        try:
            listed = api.iter_items(
                path, {"$filter": time_filter, "$expand": "evidence"}, settings.page_size, read_ahead=True
            )
            machine_alerts, machine_unreadable = _read_mde(listed, reported, matched, portal, window)
        except ApiFailed as failure:
            if failure.code != 400:
                raise
            # The page for this call documents no OData options: where it refuses $expand, the alerts still come.
            listed = api.iter_items(path, {"$filter": time_filter}, settings.page_size, read_ahead=True)
            machine_alerts, machine_unreadable = _read_mde(listed, reported, matched, portal, window)
            without_evidence = True
        alerts += machine_alerts
        unreadable += machine_unreadable
    found = ", ".join(reported for reported, _ in machines.values())
    note = " Defender refused to send their evidence ($expand=evidence), so none is shown." if without_evidence else ""
    if not alerts:
        raised = "sent no alerts it could read" if unreadable else "raised no alerts"
        return alerts, with_unreadable(f"Defender knows {found} but {raised} on it in that window.", unreadable)
    return alerts, with_unreadable(f"{_count(alerts)} on {found}.", unreadable) + note


def _read_mde(
    listed: Iterable[Any], reported: str, matched: str, portal: str, window: Window
) -> tuple[list[Alert], int]:
    """The alerts of one machine that were active in the window, and how many could not be read."""
    alerts: list[Alert] = []
    unreadable = 0
    for raw in listed:
        alert = from_mde(raw, reported, matched, portal)
        if alert is None:
            unreadable += 1
        elif active_in(alert, window):
            alerts.append(alert)
    return alerts, unreadable


# --- Graph --------------------------------------------------------------------------------------------------------


def _graph_alerts(api: Any, settings: Any, names: tuple[str, ...], window: Window) -> tuple[list[Alert], str]:
    path = f"{api_prefix(settings)}/security/alerts_v2"
    time_filter = f"lastUpdateDateTime ge {_odata_time(window.since)}"
    if not getattr(settings, "graph_all_products", False):
        # Only Defender for Endpoint's alerts are about a machine; the other products' come at the API's pace.
        time_filter += f" and serviceSource eq {_odata_string(GRAPH_MDE_SOURCE)}"
    params = {"$filter": time_filter, "$top": min(settings.page_size or GRAPH_MAX_TOP, GRAPH_MAX_TOP)}
    alerts: list[Alert] = []
    others = unreadable = not_on_machines = 0
    try:
        # No page size for the client: Graph pages by @odata.nextLink, and $skip beyond 500 is refused.
        for raw in api.iter_items(path, params, headers=GRAPH_HEADERS):
            reported, matched, device_id = graph_device(raw, names)
            if matched:
                alert = from_graph(raw, reported or "", matched, device_id)
                if alert is None:
                    unreadable += 1
                elif active_in(alert, window):
                    alerts.append(alert)
            elif reported is None:
                unreadable += 1
            elif reported:
                others += 1
            else:
                not_on_machines += 1
    except Throttled as throttled:
        raise Throttled(throttled.message, GRAPH_RATE, throttled.code, throttled.retry_at) from None
    message = _client_side_message(alerts, others, unreadable, names)
    if not alerts and not_on_machines:
        message += f" {_count_of(not_on_machines)} in that window {_were(not_on_machines)} not about a machine."
    return alerts, message


def graph_device(raw: object, names: tuple[str, ...]) -> tuple[str | None, str | None, str]:
    """(device name, matching actor name, its MDE device ID) of an alerts_v2 alert: the first device evidence that
    names one of ``names``; (a name, None, "") when its devices are others; ("", None, "") when it names no device
    (an e-mail alert); (None, None, "") when it cannot be told which device it is on."""
    if not isinstance(raw, dict):
        return None, None, ""
    evidence = raw.get("evidence")
    if evidence is None:
        return "", None, ""  # no evidence names no device: not one of the actor's
    if not isinstance(evidence, list):
        return None, None, ""
    readable, other = True, ""
    for item in evidence:
        kind = item.get("@odata.type") if isinstance(item, dict) else None
        if type(kind) is not str or not kind.endswith("deviceEvidence"):
            continue
        reported = text(item.get("deviceDnsName"), MACHINE_NAME_LENGTH)
        matched = _matching_name(names, reported) if reported else None
        matched = matched or _matching_address(names, item.get("ipInterfaces"))
        if matched:
            return reported, matched, identifier(item.get("mdeDeviceId"), ID_LENGTH)
        readable = readable and bool(reported)
        other = other or reported
    if not readable:
        return None, None, ""
    return other, None, ""


# --- SIEM ---------------------------------------------------------------------------------------------------------


def _siem_alerts(api: Any, settings: Any, names: tuple[str, ...], window: Window) -> tuple[list[Alert], str]:
    # The exporter filters on when it last processed a detection, which is at or after the alert's creation: ask from
    # the window's start to now, and keep the alerts active inside the window here. Its rows are detections, several
    # to an alert: they are grouped by AlertId, each one evidence of its alert.
    params = {"sinceTimeUtc": _odata_time(window.since)}
    groups: dict[str, list[dict[str, Any]]] = {}
    hosts: dict[str, tuple[str, str]] = {}
    others: set[str] = set()
    unreadable = 0
    for raw in api.iter_items(api_prefix(settings) + "/alerts", params):
        if not isinstance(raw, dict):
            unreadable += 1
            continue
        dns_name = text(raw.get("ComputerDnsName"), MACHINE_NAME_LENGTH)
        short_name = text(raw.get("MachineName"), MACHINE_NAME_LENGTH)
        reported = dns_name or short_name
        alert_id = identifier(raw.get("AlertId"), ID_LENGTH)
        if not reported or not alert_id:
            unreadable += 1
            continue
        matched = _matching_name(names, reported) or _matching_name(names, short_name)
        matched = matched or _matching_address(names, _address_list(raw))
        if not matched:
            others.add(alert_id)
            continue
        groups.setdefault(alert_id, []).append(raw)
        hosts.setdefault(alert_id, (reported, matched))
    alerts = [from_siem(alert_id, rows, *hosts[alert_id]) for alert_id, rows in groups.items()]
    alerts = [alert for alert in alerts if active_in(alert, window, last_update_is_activity=True)]
    return alerts, _client_side_message(alerts, len(others - groups.keys()), unreadable, names)


def _client_side_message(alerts: list[Alert], others: int, unreadable: int, names: tuple[str, ...]) -> str:
    if alerts:
        return with_unreadable(f"{_count(alerts)} on {_either(names)}.", unreadable)
    elsewhere = f" ({_count_of(others)} in that window were on other machines)" if others else ""
    return with_unreadable(f"No alerts on {_either(names)} in that window{elsewhere}.", unreadable)


def with_unreadable(message: str, unreadable: int) -> str:
    """The message, plus how many alerts could not be read, when any could not."""
    if not unreadable:
        return message
    return f"{message} {_count_of(unreadable)} could not be read and {_were(unreadable)} skipped."


def _were(number: int) -> str:
    return "was" if number == 1 else "were"


def _count(alerts: list[Alert]) -> str:
    return _count_of(len(alerts))


def _count_of(number: int) -> str:
    return f"{number} alert{'' if number == 1 else 's'}"


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# --- reading one alert --------------------------------------------------------------------------------------------

# Each flavour's detection source in Graph's spelling (the alert resource's detectionSource enum). Keys are folded:
# lower case, without spaces. Values not listed are kept as sent.
DETECTION_SOURCES = {
    # Defender for Endpoint API (alert resource type)
    "windowsdefenderatp": "microsoftDefenderForEndpoint",
    "windowsdefenderav": "antivirus",
    "windowsdefendersmartscreen": "smartScreen",
    "customerti": "customTi",
    "officeatp": "microsoftDefenderForOffice365",
    "automatedinvestigation": "automatedInvestigation",
    "threatexperts": "microsoftThreatExperts",
    "customdetection": "customDetection",
    "thirdpartysensors": "thirdPartySensors",
    "mtp": "microsoft365Defender",
    # SIEM exporter (Source, as the portal words it)
    "edr": "microsoftDefenderForEndpoint",
    "antivirus": "antivirus",
    "smartscreen": "smartScreen",
    "customti": "customTi",
    "microsoftthreatexperts": "microsoftThreatExperts",
    "microsoftdefenderforendpoint": "microsoftDefenderForEndpoint",
}
# Graph's lowerCamel enums in MDE's PascalCase, the one spelling kept for classification, determination and the
# evidence statuses; "unknown" is Graph's word for "not set".
NOT_SET = frozenset({"", "unknown", "unknownfuturevalue"})


def _detection_source(value: object) -> str:
    source = text(value, SOURCE_LENGTH)
    folded = source.replace(" ", "").lower()
    if folded in NOT_SET:
        return ""
    return DETECTION_SOURCES.get(folded, source)


def _pascal(value: object, limit: int = NAME_LENGTH) -> str:
    """An enum value in PascalCase (securityTesting -> SecurityTesting), "" for Graph's "unknown"."""
    name = text(value, limit)
    if name.lower() in NOT_SET:
        return ""
    return name[:1].upper() + name[1:]


def _severity(value: object) -> str:
    return SEVERITIES.get(value.lower(), "Unspecified") if type(value) is str else "Unspecified"


def _status(value: object) -> str:
    return STATUSES.get(value.lower(), "Unknown") if type(value) is str else "Unknown"


def _techniques(value: object) -> tuple[str, ...]:
    return text_list(value, TECHNIQUE_LENGTH, MOST_TECHNIQUES)


def _bounded(raw: dict[str, Any]) -> dict[str, Any]:
    """The alert's JSON as received, its evidence list cut to MOST_EVIDENCE entries."""
    evidence = raw.get("evidence")
    if isinstance(evidence, list) and len(evidence) > MOST_EVIDENCE:
        return {**raw, "evidence": evidence[:MOST_EVIDENCE]}
    return raw


def _user(account: object, domain: object, principal: object = None) -> str:
    account_name, domain_name = text(account, USER_LENGTH), text(domain, USER_LENGTH)
    if account_name and domain_name:
        return f"{domain_name}\\{account_name}"[:USER_LENGTH]
    return account_name or text(principal, USER_LENGTH)


def _object(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _evidence_list(value: object, read: Any) -> tuple[Evidence, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(read(item) for item in value[:MOST_EVIDENCE] if isinstance(item, dict))


def mde_evidence(item: Mapping[str, Any]) -> Evidence:
    """One entity of a Defender for Endpoint alert's evidence ($expand=evidence)."""
    kind = text(item.get("entityType"), STATUS_LENGTH)
    file_name = text(item.get("fileName"), NAME_LENGTH)
    return Evidence(
        entity_type=kind,
        process_name=file_name if kind == "Process" else "",
        command_line=text(item.get("processCommandLine"), COMMAND_LINE_LENGTH),
        parent_process=text(item.get("parentProcessFileName"), NAME_LENGTH),
        file_name=file_name,
        file_path=text(item.get("filePath"), PATH_LENGTH),
        sha1=text(item.get("sha1"), HASH_LENGTH),
        sha256=text(item.get("sha256"), HASH_LENGTH),
        user=_user(item.get("accountName"), item.get("domainName"), item.get("userPrincipalName")),
        ip_address=text(item.get("ipAddress"), ADDRESS_LENGTH),
        url=text(item.get("url"), URL_LENGTH),
        detection_status=_pascal(item.get("detectionStatus"), STATUS_LENGTH),
    )


def from_mde(raw: object, reported: str, matched: str, portal: str) -> Alert | None:
    """The Alert of one Defender for Endpoint alert, or None when it is not an object with an ID."""
    alert_id = identifier(raw.get("id"), ID_LENGTH) if isinstance(raw, dict) else ""
    if not alert_id or not isinstance(raw, dict):
        return None
    incident = identifier(raw.get("incidentId"), ID_LENGTH)
    return Alert(
        id=alert_id,
        title=text(raw.get("title"), TITLE_LENGTH),
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=text(raw.get("category"), CATEGORY_LENGTH),
        detection_source=_detection_source(raw.get("detectionSource")),
        created=moment(raw.get("alertCreationTime")),
        first_event=moment(raw.get("firstEventTime")),
        last_event=moment(raw.get("lastEventTime")),
        machine_name=text(raw.get("computerDnsName"), MACHINE_NAME_LENGTH) or reported,
        matched_name=matched,
        mitre_techniques=_techniques(raw.get("mitreTechniques")),
        portal_url=f"{portal}/alerts/{alert_id if URL_SAFE.match(alert_id) else quote(alert_id, safe='')}",
        raw=_bounded(raw),
        incident_id=incident,
        incident_url=f"{portal}/incidents/{quote(incident, safe='')}" if incident else "",
        device_id=identifier(raw.get("machineId"), ID_LENGTH),
        threat_family=text(raw.get("threatFamilyName"), NAME_LENGTH),
        threat_name=text(raw.get("threatName"), NAME_LENGTH),
        detector_id=text(raw.get("detectorId"), ID_LENGTH),
        classification=_pascal(raw.get("classification")),
        determination=_pascal(raw.get("determination")),
        assigned_to=text(raw.get("assignedTo"), NAME_LENGTH),
        last_update=moment(raw.get("lastUpdateTime")),
        resolved=moment(raw.get("resolvedTime")),
        service_source=GRAPH_MDE_SOURCE,
        product_name="Microsoft Defender for Endpoint",
        evidence=_evidence_list(raw.get("evidence"), mde_evidence),
    )


def graph_evidence(item: Mapping[str, Any]) -> Evidence:
    """One entity of a Graph alert's evidence, by its @odata.type (processEvidence, fileEvidence, ...)."""
    kind = text(item.get("@odata.type"), NAME_LENGTH).rsplit(".", 1)[-1]
    entity = _pascal(kind.removesuffix("Evidence"), STATUS_LENGTH) if kind.endswith("Evidence") else ""
    image = _object(item.get("imageFile") if "imageFile" in item else item.get("fileDetails"))
    account = _object(item.get("userAccount"))
    parent = _object(item.get("parentProcessImageFile"))
    file_name = text(image.get("fileName"), NAME_LENGTH)
    addresses = item.get("ipInterfaces")
    urls = item.get("urls")
    return Evidence(
        entity_type=entity,
        process_name=file_name if entity == "Process" else "",
        command_line=text(item.get("processCommandLine"), COMMAND_LINE_LENGTH),
        parent_process=text(parent.get("fileName"), NAME_LENGTH),
        file_name=file_name,
        file_path=text(image.get("filePath"), PATH_LENGTH),
        sha1=text(image.get("sha1"), HASH_LENGTH),
        sha256=text(image.get("sha256"), HASH_LENGTH),
        user=_user(account.get("accountName"), account.get("domainName"), account.get("userPrincipalName"))
        or text(item.get("primaryAddress"), USER_LENGTH)
        or text(item.get("recipientEmailAddress"), USER_LENGTH),
        ip_address=text(item.get("ipAddress"), ADDRESS_LENGTH)
        or text(item.get("senderIp"), ADDRESS_LENGTH)
        or (text(addresses[0], ADDRESS_LENGTH) if isinstance(addresses, list) and addresses else ""),
        url=text(item.get("url"), URL_LENGTH) or (text(urls[0], URL_LENGTH) if isinstance(urls, list) and urls else ""),
        detection_status=_pascal(item.get("detectionStatus"), STATUS_LENGTH),
        remediation_status=_pascal(item.get("remediationStatus"), STATUS_LENGTH),
    )


def from_graph(raw: dict[str, Any], reported: str, matched: str, device_id: str = "") -> Alert | None:
    alert_id = identifier(raw.get("id"), ID_LENGTH)
    if not alert_id:
        return None
    return Alert(
        id=alert_id,
        title=text(raw.get("title"), TITLE_LENGTH),
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=text(raw.get("category"), CATEGORY_LENGTH),
        detection_source=_detection_source(raw.get("detectionSource")),
        created=moment(raw.get("createdDateTime")),
        first_event=moment(raw.get("firstActivityDateTime")),
        last_event=moment(raw.get("lastActivityDateTime")),
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=_techniques(raw.get("mitreTechniques")),
        portal_url=text(raw.get("alertWebUrl"), URL_LENGTH),
        raw=_bounded(raw),
        incident_id=identifier(raw.get("incidentId"), ID_LENGTH),
        incident_url=text(raw.get("incidentWebUrl"), URL_LENGTH),
        device_id=device_id,
        threat_family=text(raw.get("threatFamilyName"), NAME_LENGTH),
        threat_name=text(raw.get("threatDisplayName"), NAME_LENGTH),
        detector_id=text(raw.get("detectorId"), ID_LENGTH),
        classification=_pascal(raw.get("classification")),
        determination=_pascal(raw.get("determination")),
        assigned_to=text(raw.get("assignedTo"), NAME_LENGTH),
        last_update=moment(raw.get("lastUpdateDateTime")),
        resolved=moment(raw.get("resolvedDateTime")),
        service_source=text(raw.get("serviceSource"), NAME_LENGTH),
        product_name=text(raw.get("productName"), NAME_LENGTH),
        evidence=_evidence_list(raw.get("evidence"), graph_evidence),
    )


def siem_evidence(row: Mapping[str, Any]) -> Evidence:
    """One SIEM detection as an evidence entity: what it names (a process when it has a command line, else a file,
    an IP address or a URL) and how Defender remediated it."""
    command_line = text(row.get("CommandLine"), COMMAND_LINE_LENGTH)
    file_name = text(row.get("FileName"), NAME_LENGTH)
    address, url = text(row.get("IpAddress"), ADDRESS_LENGTH), text(row.get("Url"), URL_LENGTH)
    kind = "Process" if command_line else "File" if file_name else "Ip" if address else "Url" if url else ""
    action = text(row.get("RemediationAction"), STATUS_LENGTH)
    success = row.get("RemediationIsSuccess")
    outcome = {True: " (succeeded)", False: " (failed)"}.get(success, "") if type(success) is bool and action else ""
    executing = row.get("WasExecutingWhileDetected")
    return Evidence(
        entity_type=kind,
        process_name=file_name if command_line else "",
        command_line=command_line,
        file_name=file_name,
        file_path=text(row.get("FilePath"), PATH_LENGTH),
        sha1=text(row.get("Sha1"), HASH_LENGTH),
        sha256=text(row.get("Sha256"), HASH_LENGTH),
        md5=text(row.get("Md5"), HASH_LENGTH),
        user=_user(row.get("UserName"), row.get("UserDomain")),
        ip_address=address,
        url=url,
        remediation_status=f"{action}{outcome}",
        was_executing=executing if type(executing) is bool else None,
    )


def _latest(times: Iterable[datetime | None]) -> datetime | None:
    known = [when for when in times if when is not None]
    return max(known) if known else None


def from_siem(alert_id: str, rows: list[dict[str, Any]], reported: str, matched: str) -> Alert:
    """One alert of the SIEM exporter from its detections (the rows with its AlertId, in the order sent). The alert's
    own fields come from its first detection; the exporter sends no status and no event times."""
    raw = rows[0]
    return Alert(
        id=alert_id,
        title=text(raw.get("AlertTitle"), TITLE_LENGTH),
        severity=_severity(raw.get("Severity")),
        status=_status(raw.get("Status")),
        category=text(raw.get("Category"), CATEGORY_LENGTH),
        detection_source=_detection_source(raw.get("Source")),
        created=moment(raw.get("AlertTime")),
        first_event=None,
        last_event=None,
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=(),
        portal_url=text(raw.get("LinkToMTP"), URL_LENGTH) or text(raw.get("LinkToWDATP"), URL_LENGTH),
        raw={"detections": rows[:MOST_EVIDENCE]},
        incident_url=text(raw.get("IncidentLinkToMTP"), URL_LENGTH) or text(raw.get("IncidentLinkToWDATP"), URL_LENGTH),
        device_id=identifier(raw.get("DeviceID"), ID_LENGTH),
        threat_family=next((name for row in rows if (name := text(row.get("ThreatFamily"), NAME_LENGTH))), ""),
        threat_name=next((name for row in rows if (name := text(row.get("ThreatName"), NAME_LENGTH))), ""),
        detector_id=text(raw.get("IoaDefinitionId"), ID_LENGTH),
        last_update=_latest(moment(row.get("LastProcessedTimeUtc")) for row in rows),
        service_source=GRAPH_MDE_SOURCE,  # the exporter sends Defender for Endpoint's alerts only
        product_name="Microsoft Defender for Endpoint",
        evidence=tuple(siem_evidence(row) for row in rows[:MOST_EVIDENCE]),
    )


# --- to and from plain fields (a remote node's answer) ------------------------------------------------------------

TIME_FIELDS = ("created", "first_event", "last_event", "last_update", "resolved")
EVIDENCE_TEXT_LENGTHS = {
    "entity_type": STATUS_LENGTH,
    "process_name": NAME_LENGTH,
    "command_line": COMMAND_LINE_LENGTH,
    "parent_process": NAME_LENGTH,
    "file_name": NAME_LENGTH,
    "file_path": PATH_LENGTH,
    "sha1": HASH_LENGTH,
    "sha256": HASH_LENGTH,
    "md5": HASH_LENGTH,
    "user": USER_LENGTH,
    "ip_address": ADDRESS_LENGTH,
    "url": URL_LENGTH,
    "detection_status": STATUS_LENGTH,
    "remediation_status": STATUS_LENGTH + 12,
}
ALERT_TEXT_LENGTHS = {
    "incident_id": ID_LENGTH,
    "incident_url": URL_LENGTH,
    "device_id": ID_LENGTH,
    "threat_family": NAME_LENGTH,
    "threat_name": NAME_LENGTH,
    "detector_id": ID_LENGTH,
    "classification": NAME_LENGTH,
    "determination": NAME_LENGTH,
    "assigned_to": NAME_LENGTH,
    "service_source": NAME_LENGTH,
    "product_name": NAME_LENGTH,
}


EVIDENCE_FIELDS = tuple(item.name for item in dataclasses.fields(Evidence))


def evidence_to_fields(evidence: Evidence) -> dict[str, Any]:
    return {name: getattr(evidence, name) for name in EVIDENCE_FIELDS}


def alert_to_fields(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready fields (times in ISO 8601, evidence as a list of dicts): what a remote node sends and
    alert_from_fields reads back."""
    item = {entry.name: getattr(alert, entry.name) for entry in dataclasses.fields(Alert)}
    for name in TIME_FIELDS:
        item[name] = item[name].isoformat() if item[name] else None
    item["mitre_techniques"] = list(alert.mitre_techniques)
    item["evidence"] = [evidence_to_fields(entry) for entry in alert.evidence]
    return item


def _evidence_from_fields(value: object) -> tuple[Evidence, ...]:
    if not isinstance(value, list):
        return ()
    read = []
    for item in value[:MOST_EVIDENCE]:
        if not isinstance(item, dict):
            continue
        executing = item.get("was_executing")
        read.append(
            Evidence(
                **{name: text(item.get(name), limit) for name, limit in EVIDENCE_TEXT_LENGTHS.items()},
                was_executing=executing if type(executing) is bool else None,
            )
        )
    return tuple(read)


def alert_from_fields(fields: object) -> Alert | None:
    """An Alert from its fields as a remote node sends them (already normalised there, but read here as untrusted
    like any answer), or None when it has no usable ID. Fields a node of an earlier version does not send are empty."""
    if not isinstance(fields, dict):
        return None
    alert_id = identifier(fields.get("id"), ID_LENGTH)
    if not alert_id:
        return None
    severity, status = fields.get("severity"), fields.get("status")
    raw = fields.get("raw")
    return Alert(
        id=alert_id,
        title=text(fields.get("title"), TITLE_LENGTH),
        severity=severity if type(severity) is str and severity in SEVERITY_NAMES else "Unspecified",
        status=status if type(status) is str and status in STATUS_NAMES else "Unknown",
        category=text(fields.get("category"), CATEGORY_LENGTH),
        detection_source=text(fields.get("detection_source"), SOURCE_LENGTH),
        created=moment(fields.get("created")),
        first_event=moment(fields.get("first_event")),
        last_event=moment(fields.get("last_event")),
        machine_name=text(fields.get("machine_name"), MACHINE_NAME_LENGTH),
        matched_name=text(fields.get("matched_name"), MACHINE_NAME_LENGTH),
        mitre_techniques=_techniques(fields.get("mitre_techniques")),
        portal_url=text(fields.get("portal_url"), URL_LENGTH),
        raw=raw if isinstance(raw, dict) else {},
        **{name: text(fields.get(name), limit) for name, limit in ALERT_TEXT_LENGTHS.items()},
        last_update=moment(fields.get("last_update")),
        resolved=moment(fields.get("resolved")),
        evidence=_evidence_from_fields(fields.get("evidence")),
    )


SEVERITY_NAMES = frozenset(SEVERITIES.values())
STATUS_NAMES = frozenset(STATUSES.values())
