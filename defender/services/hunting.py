"""Advanced hunting: did Defender record a procedure's process on the device, alert or not (Detected)?

Microsoft Defender for Endpoint: ``POST /api/advancedqueries/run`` with ``{"Query": ...}``, application permission
AdvancedQuery.Read.All; it answers ``{"Stats", "Schema": [{"Name", "Type"}], "Results": [...]}``
(learn.microsoft.com/defender-endpoint/api/run-advanced-query-api; 45 calls a minute per tenant, data of the last
30 days). Microsoft Graph: ``POST /v1.0/security/runHuntingQuery`` with ``{"Query": ...}``, ThreatHunting.Read.All;
it answers ``{"schema": [{"name", "type"}], "results": [...]}``
(learn.microsoft.com/graph/api/security-security-runhuntingquery). The legacy SIEM API has no hunting.

The query is one small shape: DeviceProcessEvents on the device's names in the window, narrowed by one term of the
command, projected to the columns compared here. Values are KQL string literals, escaped, never pasted in raw.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from defender import presets
from defender.services import budget
from defender.services.auth import api_client
from defender.services.connection import ConnectionSettings
from defender.services.errors import ApiFailed, DefenderError
from defender.services.outcomes import normalise_command

PATHS = {presets.MDE: "/api/advancedqueries/run", presets.GRAPH: "/v1.0/security/runHuntingQuery"}
ROWS_READ = 100
COLUMNS = "Timestamp, DeviceId, DeviceName, FileName, FolderPath, SHA256, ProcessCommandLine, AccountName"
TERM = re.compile(r"[A-Za-z0-9]{4,}")


class HuntingUnavailable(DefenderError):
    """Telemetry cannot be asked of this integration: no hunting API, or no permission for it."""


@dataclass(frozen=True)
class HuntingAnswer:
    rows: tuple[Mapping[str, Any], ...]
    query: str


def kql_string(value: str) -> str:
    """A KQL string literal: double-quoted, with backslashes and quotes escaped and line breaks written as escapes."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def kql_time(moment: datetime) -> str:
    return f"datetime({moment.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')})"


def search_term(command: str) -> str:
    """The command's longest alphanumeric word: `has` matches whole terms, and a long one narrows the most."""
    words = TERM.findall(command)
    return max(words, key=len) if words else ""


def query(device_names: Iterable[str], since: datetime, until: datetime, command: str) -> str:
    names = sorted({name.strip().lower().rstrip(".") for name in device_names if name and name.strip()})
    # Defender names a device by its FQDN: a short name also matches any FQDN it starts.
    shorts = [name for name in names if "." not in name]
    devices = f"DeviceName in~ ({', '.join(kql_string(name) for name in names)})"
    devices += "".join(f" or DeviceName startswith {kql_string(name + '.')}" for name in shorts)
    lines = [
        "DeviceProcessEvents",
        f"| where Timestamp between ({kql_time(since)} .. {kql_time(until)})",
        f"| where {devices}",
    ]
    term = search_term(command)
    if term:
        lines.append(f"| where ProcessCommandLine has {kql_string(term)}")
    lines += [f"| project {COLUMNS}", f"| take {ROWS_READ}"]
    return "\n".join(lines)


def run(settings: ConnectionSettings, text: str) -> HuntingAnswer:
    """Run the query through the integration's client (its token, route and retries), taking from the tenant's
    advanced-hunting budget rather than the alert API's."""
    path = PATHS.get(settings.flavour)
    if path is None:
        raise HuntingUnavailable(f"telemetry not checked: the {settings.name or 'SIEM'} API has no advanced hunting.")
    api = api_client(settings, budget.hunting_budget_for(settings))
    try:
        response = api.post_json(api.url(path), {"Query": text})
    except ApiFailed as failure:
        if failure.code == 403:
            raise HuntingUnavailable(
                f"telemetry not checked: grant {presets.HUNTING_ROLES[settings.flavour]} to the app of {settings.name} "
                "(Azure portal > App registrations > API permissions, then admin consent)."
            ) from None
        raise
    body = response.json() if response.content else {}
    rows = body.get("Results" if settings.flavour == presets.MDE else "results") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise DefenderError(f"{settings.name} answered the hunting query without a list of results.")
    return HuntingAnswer(tuple(row for row in rows if isinstance(row, dict)), text)


def ran(rows: Iterable[Mapping[str, Any]], command: str) -> bool:
    """Whether a process of these rows ran the command (compared as the alert rules compare)."""
    wanted = normalise_command(command)
    if not wanted:
        return False
    for row in rows:
        line = normalise_command(str(row.get("ProcessCommandLine") or ""))
        if line and (line == wanted or wanted in line or line in wanted):
            return True
    return False
