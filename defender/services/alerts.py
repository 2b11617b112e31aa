"""The alerts Defender raised on one actor in a time window, from any of the three API flavours, as one Alert type.

The Defender for Endpoint API cannot filter alerts by host name, so the machine is looked up first and its alerts read
by machine ID. Graph and the SIEM exporter filter on time at the server and on the host here.

Every field of every answer is read as untrusted: text that is an object, a list, a number, null or huge becomes text
of the column's size (or nothing), and an alert without a usable ID (or that is not an object at all) is skipped and
counted in the message. One odd alert never costs the others.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote

from defender import presets
from defender.services.auth import TokenSource
from defender.services.client import ApiClient
from defender.services.connection import ConnectionSettings
from defender.services.errors import NotFound
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


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    title: str
    severity: str  # Informational, Low, Medium, High or Unspecified
    status: str  # New, InProgress, Resolved or Unknown
    category: str
    detection_source: str
    created: datetime | None
    first_event: datetime | None
    last_event: datetime | None
    machine_name: str  # as Defender reports it
    matched_name: str  # which of the actor's names matched it
    mitre_techniques: tuple
    portal_url: str
    raw: dict = field(repr=False, compare=False, hash=False)


class Window(NamedTuple):
    since: datetime
    until: datetime


@dataclass(frozen=True)
class AlertsResult:
    alerts: list  # newest first
    tried_names: tuple
    window: Window  # as asked for, widened by the clock-skew tolerance
    message: str  # one sentence for the person looking at the table; the window is said next to it


def api_prefix(settings):
    """Where the flavour's API lives on its host: /api[/v1.0] for Defender, /{version} for Graph, /api for SIEM."""
    if settings.flavour == presets.MDE:
        return f"/api/{settings.api_version}" if settings.api_version else "/api"
    if settings.flavour == presets.GRAPH:
        return f"/{settings.api_version or 'v1.0'}"
    return "/api"


def probe_path(settings):
    """The path and parameters of the cheapest call that proves the token is accepted: one alert at most."""
    if settings.flavour == presets.GRAPH:
        return f"{api_prefix(settings)}/security/alerts_v2", {"$top": 1}
    if settings.flavour == presets.SIEM:
        return "/api/alerts", {"limit": 1}
    return f"{api_prefix(settings)}/alerts", {"$top": 1}


def probe_api(settings):
    """Make the cheap call and say what came back; raises a DefenderError (401, 403, ...) otherwise."""
    path, params = probe_path(settings)
    api = ApiClient(settings, TokenSource(settings))
    data = api.get_json(api.url(path), params)
    items = data if isinstance(data, list) else (data.get("value") if isinstance(data, dict) else None)
    count = len(items) if isinstance(items, list) else 0
    return f"GET {path} answered 200 with {count} alert{'' if count == 1 else 's'}."


def alerts_for_actor(
    settings: ConnectionSettings,
    hostnames: Iterable[str],
    since: datetime | None = None,
    until: datetime | None = None,
) -> AlertsResult:
    """The alerts raised on the machine known by any of ``hostnames`` between since and until (default: the
    integration's lookback window ending now), widened on both sides by the clock-skew tolerance."""
    names = tuple(dict.fromkeys(name.strip().rstrip(".") for name in hostnames if name and name.strip()))
    until = _aware(until) or datetime.now(UTC)
    since = _aware(since) or until - timedelta(hours=settings.lookback_hours)
    skew = timedelta(seconds=settings.clock_skew_seconds)
    window = Window(since - skew, until + skew)
    api = ApiClient(settings, TokenSource(settings))
    fetch = {presets.MDE: _mde_alerts, presets.GRAPH: _graph_alerts, presets.SIEM: _siem_alerts}[settings.flavour]
    alerts, message = fetch(api, settings, names, window)
    alerts.sort(key=_newest_first)
    return AlertsResult(alerts, names, window, message)


def _newest_first(alert):
    return -(alert.created.timestamp() if alert.created else float("-inf"))


def same_host(wanted, reported):
    """A short name and its FQDN name the same host (ws-fin-07 ~ ws-fin-07.corp.contoso.com); two FQDNs must be
    equal. Case-insensitive; IP addresses match only themselves."""
    wanted, reported = wanted.lower().rstrip("."), reported.lower().rstrip(".")
    if wanted == reported:
        return True
    if _is_ip(wanted) or _is_ip(reported) or ("." in wanted and "." in reported):
        return False
    return wanted.split(".", 1)[0] == reported.split(".", 1)[0]


def _is_ip(name):
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _matching_name(names, reported):
    return next((name for name in names if same_host(name, reported)), None)


def _either(names):
    return " or ".join(names) if names else "(no host name)"


def describe_window(window, clock_skew_seconds: int) -> str:
    """The window Defender was asked for, as the person asked for it, with the clock-skew tolerance said once."""
    skew = timedelta(seconds=clock_skew_seconds)
    since, until = window.since + skew, window.until - skew
    tolerance = f" (± {clock_skew_text(clock_skew_seconds)} clock-skew tolerance)" if skew else ""
    return f"between {since:%Y-%m-%d %H:%M} and {until:%Y-%m-%d %H:%M} UTC{tolerance}"


def clock_skew_text(seconds: int) -> str:
    """A clock-skew tolerance in the words the console uses for it: "5 min", "90 s"."""
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def _odata_time(when):
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _odata_string(text):
    return "'" + text.replace("'", "''") + "'"


def _mde_alerts(api, settings, names, window):
    prefix = api_prefix(settings)
    machines = {}  # machine id -> (computerDnsName, matched name), first match wins
    searched = []
    for name in names:
        if _is_ip(name):
            query, searched_for = f"computerDnsName eq {_odata_string(name)}", name
        else:
            short = name.split(".", 1)[0]
            query, searched_for = f"startswith(computerDnsName,{_odata_string(short)})", f"{short}*"
        searched.append(searched_for)
        try:
            # startswith on the short name finds the FQDN and the bare name; same_host drops ws-fin-071 for ws-fin-07.
            for machine in api.iter_items(f"{prefix}/machines", {"$filter": query}, settings.page_size):
                if not isinstance(machine, dict):
                    continue
                machine_id = identifier(machine.get("id"), ID_LENGTH)
                reported = text(machine.get("computerDnsName"), MACHINE_NAME_LENGTH)
                if machine_id and machine_id not in machines and reported and same_host(name, reported):
                    machines[machine_id] = (reported, name)
        except NotFound:
            continue  # the machines API answers 404 when no recently seen machine matches
    if not machines:
        return [], (
            f"No machine named {_either(names)} is known to Defender (searched computer names {', '.join(searched)})."
        )
    portal = (
        "https://security.microsoft.us"
        if settings.host.lower().endswith(".microsoft.us")
        else ("https://security.microsoft.com")
    )
    time_filter = (
        f"alertCreationTime ge {_odata_time(window.since)} and alertCreationTime le {_odata_time(window.until)}"
    )
    alerts, unreadable = [], 0
    for machine_id, (reported, matched) in machines.items():
        path = f"{prefix}/machines/{quote(machine_id, safe='')}/alerts"
        for raw in api.iter_items(path, {"$filter": time_filter}, settings.page_size):
            alert = _from_mde(raw, reported, matched, portal)
            if alert is None:
                unreadable += 1
            else:
                alerts.append(alert)
    found = ", ".join(reported for reported, _ in machines.values())
    if not alerts:
        raised = "sent no alerts it could read" if unreadable else "raised no alerts"
        return alerts, with_unreadable(f"Defender knows {found} but {raised} on it in that window.", unreadable)
    return alerts, with_unreadable(f"{_count(alerts)} on {found}.", unreadable)


def _graph_alerts(api, settings, names, window):
    path = f"{api_prefix(settings)}/security/alerts_v2"
    time_filter = f"createdDateTime ge {_odata_time(window.since)} and createdDateTime le {_odata_time(window.until)}"
    alerts, others, unreadable = [], 0, 0
    for raw in api.iter_items(path, {"$filter": time_filter}, settings.page_size):
        reported, matched = _graph_device(raw, names)
        if matched:
            alert = _from_graph(raw, reported, matched)
            if alert is None:
                unreadable += 1
            else:
                alerts.append(alert)
        elif reported is None:
            unreadable += 1
        else:
            others += 1
    return alerts, _client_side_message(alerts, others, unreadable, names)


def _graph_device(raw, names):
    """(device name, matching actor name) of an alerts_v2 alert: the first device evidence that names one of
    ``names``; ("", None) when its devices are others; (None, None) when it cannot be told which device it is on."""
    if not isinstance(raw, dict):
        return None, None
    evidence = raw.get("evidence")
    if evidence is None:
        return "", None  # no evidence names no device: not one of the actor's
    if not isinstance(evidence, list):
        return None, None
    readable = True
    for item in evidence:
        kind = item.get("@odata.type") if isinstance(item, dict) else None
        if type(kind) is not str or not kind.endswith("deviceEvidence"):
            continue
        reported = text(item.get("deviceDnsName"), MACHINE_NAME_LENGTH)
        matched = _matching_name(names, reported) if reported else None
        if matched:
            return reported, matched
        readable = readable and bool(reported)
    return ("", None) if readable else (None, None)


def _siem_alerts(api, settings, names, window):
    # The exporter filters on when it last processed an alert, which is at or after its creation: ask from the
    # window's start to now, and keep the alerts raised inside the window here.
    params = {"sinceTimeUtc": _odata_time(window.since)}
    alerts, others, unreadable, seen = [], 0, 0, set()
    for raw in api.iter_items(api_prefix(settings) + "/alerts", params):
        if not isinstance(raw, dict):
            unreadable += 1
            continue
        dns_name = text(raw.get("ComputerDnsName"), MACHINE_NAME_LENGTH)
        short_name = text(raw.get("MachineName"), MACHINE_NAME_LENGTH)
        reported = dns_name or short_name
        matched = _matching_name(names, reported) or _matching_name(names, short_name)
        created = moment(raw.get("AlertTime"))
        if not reported:
            unreadable += 1
            continue
        if not matched or (created and not window.since <= created <= window.until):
            others += 1
            continue
        alert = _from_siem(raw, reported, matched, created)
        if alert is None:
            unreadable += 1
        elif alert.id not in seen:
            seen.add(alert.id)
            alerts.append(alert)
    return alerts, _client_side_message(alerts, others, unreadable, names)


def _client_side_message(alerts, others, unreadable, names):
    if alerts:
        return with_unreadable(f"{_count(alerts)} on {_either(names)}.", unreadable)
    elsewhere = f" ({_count_of(others)} in that window were on other machines)" if others else ""
    return with_unreadable(f"No alerts on {_either(names)} in that window{elsewhere}.", unreadable)


def with_unreadable(message: str, unreadable: int) -> str:
    """The message, plus how many alerts could not be read, when any could not."""
    if not unreadable:
        return message
    verb = "was" if unreadable == 1 else "were"
    return f"{message} {_count_of(unreadable)} could not be read and {verb} skipped."


def _count(alerts):
    return _count_of(len(alerts))


def _count_of(number):
    return f"{number} alert{'' if number == 1 else 's'}"


def _aware(when):
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _severity(value):
    return SEVERITIES.get(value.lower(), "Unspecified") if type(value) is str else "Unspecified"


def _status(value):
    return STATUSES.get(value.lower(), "Unknown") if type(value) is str else "Unknown"


def _techniques(value):
    return text_list(value, TECHNIQUE_LENGTH, MOST_TECHNIQUES)


def _from_mde(raw, reported, matched, portal):
    """The Alert of one Defender for Endpoint alert, or None when it is not an object with an ID."""
    alert_id = identifier(raw.get("id"), ID_LENGTH) if isinstance(raw, dict) else ""
    if not alert_id:
        return None
    return Alert(
        id=alert_id,
        title=text(raw.get("title"), TITLE_LENGTH),
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=text(raw.get("category"), CATEGORY_LENGTH),
        detection_source=text(raw.get("detectionSource"), SOURCE_LENGTH),
        created=moment(raw.get("alertCreationTime")),
        first_event=moment(raw.get("firstEventTime")),
        last_event=moment(raw.get("lastEventTime")),
        machine_name=text(raw.get("computerDnsName"), MACHINE_NAME_LENGTH) or reported,
        matched_name=matched,
        mitre_techniques=_techniques(raw.get("mitreTechniques")),
        portal_url=f"{portal}/alerts/{alert_id if URL_SAFE.match(alert_id) else quote(alert_id, safe='')}",
        raw=raw,
    )


def _from_graph(raw, reported, matched):
    alert_id = identifier(raw.get("id"), ID_LENGTH)
    if not alert_id:
        return None
    return Alert(
        id=alert_id,
        title=text(raw.get("title"), TITLE_LENGTH),
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=text(raw.get("category"), CATEGORY_LENGTH),
        detection_source=text(raw.get("detectionSource"), SOURCE_LENGTH),
        created=moment(raw.get("createdDateTime")),
        first_event=moment(raw.get("firstActivityDateTime")),
        last_event=moment(raw.get("lastActivityDateTime")),
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=_techniques(raw.get("mitreTechniques")),
        portal_url=text(raw.get("alertWebUrl"), URL_LENGTH),
        raw=raw,
    )


def _from_siem(raw, reported, matched, created):
    alert_id = identifier(raw.get("AlertId"), ID_LENGTH)
    if not alert_id:
        return None
    return Alert(
        id=alert_id,
        title=text(raw.get("AlertTitle"), TITLE_LENGTH),
        severity=_severity(raw.get("Severity")),
        status=_status(raw.get("Status")),
        category=text(raw.get("Category"), CATEGORY_LENGTH),
        detection_source=text(raw.get("Source"), SOURCE_LENGTH),
        created=created,
        first_event=moment(raw.get("FirstEventTime")),
        last_event=moment(raw.get("LastEventTime")),
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=(),
        portal_url=text(raw.get("LinkToMTP"), URL_LENGTH) or text(raw.get("LinkToWDATP"), URL_LENGTH),
        raw=raw,
    )


def alert_from_fields(fields: object) -> Alert | None:
    """An Alert from its fields as a remote node sends them (already normalised there, but read here as untrusted
    like any answer), or None when it has no usable ID."""
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
    )


SEVERITY_NAMES = frozenset(SEVERITIES.values())
STATUS_NAMES = frozenset(STATUSES.values())
