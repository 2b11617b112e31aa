"""The alerts Defender raised on one actor in a time window, from any of the three API flavours, as one Alert type.

The Defender for Endpoint API cannot filter alerts by host name, so the machine is looked up first and its alerts read
by machine ID. Graph and the SIEM exporter filter on time at the server and on the host here.
"""

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote

from defender import presets
from defender.services.auth import TokenSource
from defender.services.client import ApiClient
from defender.services.errors import NotFound

# Alert ids are URL-safe (da638…_-1234); quoting them anyway costs a tenth of the whole fetch on 10,000 alerts.
URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*\Z")
SEVERITIES = {"informational": "Informational", "low": "Low", "medium": "Medium", "high": "High"}
STATUSES = {"new": "New", "inprogress": "InProgress", "in_progress": "InProgress", "resolved": "Resolved"}


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


def alerts_for_actor(settings, hostnames, since=None, until=None):
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


def _odata_time(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
                reported = machine.get("computerDnsName") or ""
                if machine.get("id") and machine["id"] not in machines and same_host(name, reported):
                    machines[machine["id"]] = (reported, name)
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
    alerts = []
    for machine_id, (reported, matched) in machines.items():
        path = f"{prefix}/machines/{quote(machine_id, safe='')}/alerts"
        for raw in api.iter_items(path, {"$filter": time_filter}, settings.page_size):
            alerts.append(_from_mde(raw, reported, matched, portal))
    found = ", ".join(reported for reported, _ in machines.values())
    if not alerts:
        return alerts, f"Defender knows {found} but raised no alerts on it in that window."
    return alerts, f"{_count(alerts)} on {found}."


def _graph_alerts(api, settings, names, window):
    path = f"{api_prefix(settings)}/security/alerts_v2"
    time_filter = f"createdDateTime ge {_odata_time(window.since)} and createdDateTime le {_odata_time(window.until)}"
    alerts, others = [], 0
    for raw in api.iter_items(path, {"$filter": time_filter}, settings.page_size):
        for evidence in raw.get("evidence") or ():
            if not str(evidence.get("@odata.type", "")).endswith("deviceEvidence"):
                continue
            reported = evidence.get("deviceDnsName") or ""
            matched = _matching_name(names, reported)
            if matched:
                alerts.append(_from_graph(raw, reported, matched))
                break
        else:
            others += 1
    return alerts, _client_side_message(alerts, others, names)


def _siem_alerts(api, settings, names, window):
    # The exporter filters on when it last processed an alert, which is at or after its creation: ask from the
    # window's start to now, and keep the alerts raised inside the window here.
    params = {"sinceTimeUtc": _odata_time(window.since)}
    alerts, others, seen = [], 0, set()
    for raw in api.iter_items(api_prefix(settings) + "/alerts", params):
        reported = raw.get("ComputerDnsName") or raw.get("MachineName") or ""
        matched = _matching_name(names, reported) or _matching_name(names, raw.get("MachineName") or "")
        created = _time(raw.get("AlertTime"))
        if not matched or (created and not window.since <= created <= window.until):
            others += 1
            continue
        alert = _from_siem(raw, reported, matched, created)
        if alert.id not in seen:
            seen.add(alert.id)
            alerts.append(alert)
    return alerts, _client_side_message(alerts, others, names)


def _client_side_message(alerts, others, names):
    if alerts:
        return f"{_count(alerts)} on {_either(names)}."
    elsewhere = f" ({_count_of(others)} in that window were on other machines)" if others else ""
    return f"No alerts on {_either(names)} in that window{elsewhere}."


def _count(alerts):
    return _count_of(len(alerts))


def _count_of(number):
    return f"{number} alert{'' if number == 1 else 's'}"


def _aware(moment):
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _time(value):
    """An aware datetime from the APIs' ISO 8601 strings (7-digit fractions and Z included), None when absent."""
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _severity(value):
    return SEVERITIES.get(str(value).lower(), "Unspecified") if value else "Unspecified"


def _status(value):
    return STATUSES.get(str(value).lower(), "Unknown") if value else "Unknown"


def _from_mde(raw, reported, matched, portal):
    alert_id = str(raw.get("id") or "")
    return Alert(
        id=alert_id,
        title=raw.get("title") or "",
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=raw.get("category") or "",
        detection_source=raw.get("detectionSource") or "",
        created=_time(raw.get("alertCreationTime")),
        first_event=_time(raw.get("firstEventTime")),
        last_event=_time(raw.get("lastEventTime")),
        machine_name=raw.get("computerDnsName") or reported,
        matched_name=matched,
        mitre_techniques=tuple(raw.get("mitreTechniques") or ()),
        portal_url=f"{portal}/alerts/{alert_id if URL_SAFE.match(alert_id) else quote(alert_id, safe='')}",
        raw=raw,
    )


def _from_graph(raw, reported, matched):
    return Alert(
        id=str(raw.get("id") or ""),
        title=raw.get("title") or "",
        severity=_severity(raw.get("severity")),
        status=_status(raw.get("status")),
        category=raw.get("category") or "",
        detection_source=raw.get("detectionSource") or "",
        created=_time(raw.get("createdDateTime")),
        first_event=_time(raw.get("firstActivityDateTime")),
        last_event=_time(raw.get("lastActivityDateTime")),
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=tuple(raw.get("mitreTechniques") or ()),
        portal_url=raw.get("alertWebUrl") or "",
        raw=raw,
    )


def _from_siem(raw, reported, matched, created):
    return Alert(
        id=str(raw.get("AlertId") or ""),
        title=raw.get("AlertTitle") or "",
        severity=_severity(raw.get("Severity")),
        status=_status(raw.get("Status")),
        category=raw.get("Category") or "",
        detection_source=raw.get("Source") or "",
        created=created,
        first_event=_time(raw.get("FirstEventTime")),
        last_event=_time(raw.get("LastEventTime")),
        machine_name=reported,
        matched_name=matched,
        mitre_techniques=(),
        portal_url=raw.get("LinkToMTP") or raw.get("LinkToWDATP") or "",
        raw=raw,
    )
