"""The Defender for Endpoint API: /api/machines, /api/machines/{id}, /api/machines/{id}/alerts, /api/alerts.

Shapes, filterable fields, limits, permissions and errors follow docs/microsoft-api.md (Defender for Endpoint API).
Notably, `computerDnsName` is an alert property but not a filterable one: asking gets 400 ODataError; text compares
case-sensitively; evidence comes only with `$expand=evidence`; machines are found by IP through `lastIpAddress` and
`/api/machines/findbyip(ip='…',timestamp=…)` (seen with that IP 15 minutes either side, within the past 30 days).
"""

import re
from datetime import timedelta

from . import scopes
from .odata import (
    Field,
    ODataError,
    parse_count_option,
    parse_datetime,
    parse_filter,
    parse_orderby,
    sort_records,
)
from .paging import page
from .reply import Reply, utc_now
from .seed import jsonable

MAX_TOP = 10000
FIND_BY_IP = re.compile(r"findbyip\(ip='(?P<ip>[^']*)',timestamp=(?P<timestamp>[^)]*)\)\Z", re.IGNORECASE)
FIND_BY_IP_SPAN = timedelta(minutes=15)
FIND_BY_IP_RANGE = timedelta(days=30)

ALERT_FILTER_FIELDS = {
    name: Field(name, kind, case_sensitive=True)
    for name, kind in [
        ("alertCreationTime", "datetime"),
        ("lastUpdateTime", "datetime"),
        ("incidentId", "number"),
        ("investigationId", "number"),
        ("id", "string"),
        ("assignedTo", "string"),
        ("detectionSource", "string"),
        ("lastEventTime", "datetime"),
        ("status", "string"),
        ("severity", "string"),
        ("category", "string"),
    ]
}
ALERT_ORDER_FIELDS = {name: ALERT_FILTER_FIELDS[name] for name in ("alertCreationTime", "lastUpdateTime")}
MACHINE_FILTER_FIELDS = {
    name: Field(name, kind, case_sensitive=True)
    for name, kind in [
        ("computerDnsName", "string"),
        ("id", "string"),
        ("version", "string"),
        ("deviceValue", "string"),
        ("aadDeviceId", "string"),
        ("lastSeen", "datetime"),
        ("exposureLevel", "string"),
        ("onboardingStatus", "string"),
        ("lastIpAddress", "string"),
        ("healthStatus", "string"),
        ("osPlatform", "string"),
        ("riskScore", "string"),
        ("rbacGroupId", "number"),
        ("machineTags", "collection"),  # machineTags/any(tag: tag eq 'Lab')
    ]
}


def error(request, status, code, message, headers=None):
    return Reply(status, {"error": {"code": code, "message": message, "target": request.correlation_id}}, headers or {})


def forbidden(request, roles):
    return error(
        request,
        403,
        "Forbidden",
        f"The application does not have any of the required application permissions ({', '.join(roles)}) to access"
        " the resource.",
    )


class DefenderAPI:
    def __init__(self, simulator):
        self.simulator = simulator
        self.data = simulator.data
        self.machines = {machine["id"]: machine for machine in self.data.machines}
        # Seed alerts never change, so each is rendered once; a 10,000-alert page then costs little more than JSON.
        self._rendered = {}

    def handle(self, request, route, claims):
        """route: the path after /api (or /api/v1.0), split on "/"."""
        roles = set(claims.get("roles", []))
        try:
            if route == ["alerts"]:
                if not roles & set(scopes.ALERT_ROLES):
                    return forbidden(request, scopes.ALERT_ROLES)
                if request.params.get("$orderby") and self.simulator.faults.refuse_orderby():
                    raise ODataError(
                        "Query option 'OrderBy' is not allowed. To allow it, set the 'AllowedQueryOptions'."
                    )
                return self.alerts(request, self.data.alerts)
            if len(route) == 2 and route[0] == "alerts":
                if not roles & set(scopes.ALERT_ROLES):
                    return forbidden(request, scopes.ALERT_ROLES)
                return self.alert(request, route[1])
            if route == ["machines"]:
                if not roles & set(scopes.MACHINE_ROLES):
                    return forbidden(request, scopes.MACHINE_ROLES)
                return self.list_machines(request)
            if len(route) == 2 and route[0] == "machines" and route[1].lower().startswith("findbyip("):
                if not roles & set(scopes.MACHINE_ROLES):
                    return forbidden(request, scopes.MACHINE_ROLES)
                return self.find_by_ip(request, route[1])
            if len(route) == 2 and route[0] == "machines":
                if not roles & set(scopes.MACHINE_ROLES):
                    return forbidden(request, scopes.MACHINE_ROLES)
                machine = self.find_machine(route[1])
                if machine is None:
                    return error(request, 404, "ResourceNotFound", f"Machine {route[1]} was not found")
                return Reply(200, {"@odata.context": self.context(request, "Machines/$entity"), **jsonable(machine)})
            if len(route) == 3 and route[0] == "machines" and route[2].lower() == "alerts":
                if not roles & set(scopes.ALERT_ROLES):
                    return forbidden(request, scopes.ALERT_ROLES)
                machine = self.find_machine(route[1])
                if machine is None:
                    return error(request, 404, "ResourceNotFound", f"Machine {route[1]} was not found")
                if request.params.get("$expand") and self.simulator.faults.refuse_expand():
                    raise ODataError(
                        "Query option 'Expand' is not allowed. To allow it, set the 'AllowedQueryOptions'."
                    )
                return self.alerts(request, self.data.alerts_by_machine.get(machine["id"], []))
        except ODataError as exc:
            return error(request, 400, "ODataError", str(exc))
        return error(request, 404, "NotFound", f"The requested resource {request.path} was not found.")

    @staticmethod
    def context(request, entity_set):
        prefix = "/api/v1.0" if request.path.lower().startswith("/api/v1.0/") else "/api"
        return f"{request.origin}{prefix}/$metadata#{entity_set}"

    def reindex(self, changed_alert_ids=()):
        """After the seed data changed (a fleet seeded, an alert updated): machines found again, changed alerts
        rendered afresh."""
        self.machines = {machine["id"]: machine for machine in self.data.machines}
        for alert_id in changed_alert_ids:
            self._rendered.pop((alert_id, True), None)
            self._rendered.pop((alert_id, False), None)

    def find_machine(self, key):
        """A machine by its device ID or its computer name, as GET /api/machines/{id} takes either."""
        key = key.lower()
        if key in self.machines:
            return self.machines[key]
        return next((m for m in self.data.machines if m["computerDnsName"].lower() == key), None)

    def find_by_ip(self, request, call):
        """The machines seen with an internal IP within 15 minutes of a moment of the past 30 days."""
        match = FIND_BY_IP.match(call)
        if match is None:
            raise ODataError(f"The request URI '{call}' is not valid: findbyip takes ip='…' and timestamp=….")
        try:
            at = parse_datetime(match["timestamp"])
        except ValueError:
            raise ODataError(f"The timestamp '{match['timestamp']}' is not a valid date and time.") from None
        if not utc_now() - FIND_BY_IP_RANGE <= at <= utc_now() + FIND_BY_IP_SPAN:
            return error(request, 400, "InvalidInput", "The timestamp must be within the last 30 days.")
        machines = [
            machine
            for machine in self.data.machines
            if machine["lastIpAddress"] == match["ip"]
            and machine["firstSeen"] - FIND_BY_IP_SPAN <= at <= machine["lastSeen"] + FIND_BY_IP_SPAN
        ]
        return Reply(
            200, {"@odata.context": self.context(request, "Machines"), "value": [jsonable(m) for m in machines]}
        )

    def list_machines(self, request):
        machines = self.data.machines
        if request.params.get("$filter"):
            predicate = parse_filter(request.params["$filter"], MACHINE_FILTER_FIELDS, "Machine", machines[0])
            machines = [machine for machine in machines if predicate(machine)]
        top = parse_count_option(request.params, "$top", MAX_TOP)
        skip = parse_count_option(request.params, "$skip")
        items, next_link, _ = page(request, machines, top, skip, MAX_TOP)
        body = {"@odata.context": self.context(request, "Machines"), "value": [jsonable(m) for m in items]}
        if next_link:
            body["@odata.nextLink"] = next_link
        return Reply(200, body)

    def alert(self, request, alert_id):
        alert = next((a for a in self.data.alerts if a["id"] == alert_id), None)
        if alert is None:
            return error(request, 404, "ResourceNotFound", f"Alert {alert_id} was not found")
        return Reply(200, {"@odata.context": self.context(request, "Alerts/$entity"), **self.rendered(alert, True)})

    def alerts(self, request, alerts):
        params = request.params
        expand = params.get("$expand", "")
        if expand and expand.lower() != "evidence":
            raise ODataError(f"Could not find a property named '{expand}' on type 'Alert'.")
        if params.get("$filter"):
            predicate = parse_filter(params["$filter"], ALERT_FILTER_FIELDS, "Alert", self.data.alerts[0])
            alerts = [alert for alert in alerts if predicate(alert)]
        if params.get("$orderby"):
            field, descending = parse_orderby(params["$orderby"], ALERT_ORDER_FIELDS)
            if not self.simulator.faults.ignore_orderby():
                alerts = sort_records(alerts, field, descending)
        top = parse_count_option(params, "$top", MAX_TOP)
        skip = parse_count_option(params, "$skip")
        drop = self.simulator.faults.drop_next_link()
        items, next_link, page_number = page(request, alerts, top, skip, self.simulator.page_size, drop)
        body = {
            "@odata.context": self.context(request, "Alerts"),
            "value": [self.rendered(a, bool(expand)) for a in items],
        }
        if next_link:
            body["@odata.nextLink"] = next_link
        return Reply(200, body, page=page_number)

    def rendered(self, alert, with_evidence):
        key = (alert["id"], with_evidence)
        if key not in self._rendered:
            self._rendered[key] = self.render(alert, with_evidence)
        return self._rendered[key]

    @staticmethod
    def render(alert, with_evidence):
        rendered = {key: value for key, value in alert.items() if key != "evidence"}
        rendered = jsonable(rendered)
        rendered["evidence"] = [render_evidence(item) for item in alert["evidence"]] if with_evidence else []
        return rendered


EVIDENCE_FIELDS = [
    "entityType", "evidenceCreationTime", "sha1", "sha256", "fileName", "filePath", "processId", "processCommandLine",
    "processCreationTime", "parentProcessId", "parentProcessCreationTime", "parentProcessFileName",
    "parentProcessFilePath", "ipAddress", "url", "registryKey", "registryHive", "registryValueType", "registryValue",
    "accountName", "domainName", "userSid", "aadUserId", "userPrincipalName", "detectionStatus",
]  # fmt: skip


def render_evidence(item):
    """An evidence entity with every documented property, null where it does not apply, as the API sends them."""
    return jsonable({name: item.get(name) for name in EVIDENCE_FIELDS})
