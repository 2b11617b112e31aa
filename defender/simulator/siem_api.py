"""The legacy SIEM alert exporter: GET /api/alerts with a v1 token for https://graph.windows.net.

A bare JSON array of PascalCase detections, several to an alert (one per process or file of its evidence), each
filtered on its LastProcessedTimeUtc. Without sinceTimeUtc or ago the exporter answers for the last 2 hours. Empty
values are "" (not null), except the booleans RemediationIsSuccess and WasExecutingWhileDetected; there is no Status,
FirstEventTime or LastEventTime. Source: docs/microsoft-api.md, section 9.
"""

import hashlib
import re
from datetime import timedelta

from .odata import parse_datetime
from .reply import Reply, utc_now
from .seed import iso

DEFAULT_WINDOW = timedelta(hours=2)
DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
SOURCE = {
    "WindowsDefenderAtp": "EDR",
    "WindowsDefenderAv": "Antivirus",
    "CustomDetection": "CustomDetection",
    "AutomatedInvestigation": "AutomatedInvestigation",
}


class BadQuery(ValueError):
    pass


def parse_duration(text):
    match = DURATION.match(text)
    if not match or text.upper() in ("P", "PT") or text.upper().endswith("T"):
        raise BadQuery(f"The value '{text}' of parameter 'ago' is not a valid ISO 8601 duration.")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def parse_time(name, text):
    try:
        return parse_datetime(text)
    except ValueError:
        raise BadQuery(f"The value '{text}' of parameter '{name}' is not a valid date and time.") from None


def error(status, message, headers=None):
    """The exporter's error: its body is not documented (docs/microsoft-api.md, section 9); unlike the Defender API's
    OData JSON it is a line of plain text here, so clients must not count on an {"error": {...}} object."""
    return Reply(status, message, dict(headers or {}))


class SiemAPI:
    def __init__(self, simulator):
        self.simulator = simulator
        self.data = simulator.data
        self.machines = {machine["id"]: machine for machine in self.data.machines}

    def handle(self, request):
        params = {name.lower(): value for name, value in request.params.items()}
        now = utc_now()
        try:
            since = now - DEFAULT_WINDOW
            if params.get("ago"):
                since = now - parse_duration(params["ago"])
            elif params.get("sincetimeutc"):
                since = parse_time("sinceTimeUtc", params["sincetimeutc"])
            until = parse_time("untilTimeUtc", params["untiltimeutc"]) if params.get("untiltimeutc") else None
            limit = params.get("limit")
            if limit is not None and not limit.isdigit():
                raise BadQuery(f"The value '{limit}' of parameter 'limit' is not a valid integer.")
        except BadQuery as exc:
            return error(400, str(exc))
        tags = {value.lower() for name, value in request.multi_params if name.lower() == "devicecreatedmachinetags"}
        rows = [
            row
            for alert in self.data.alerts
            for row in self.detections(alert)
            if row["_processed"] >= since and (until is None or row["_processed"] <= until)
        ]
        if tags:
            rows = [row for row in rows if tags & {t.lower() for t in self.machines[row["_machine"]]["machineTags"]}]
        rows.sort(key=lambda row: (row["_processed"], row["AlertId"], row["ReportID"]))
        if limit is not None:
            rows = rows[-int(limit) :] if int(limit) else []
        return Reply(200, [{name: value for name, value in row.items() if not name.startswith("_")} for row in rows])

    def detections(self, alert):
        """The alert's detections: one per process or file of its evidence (one when it has none), processed one
        after the other up to the alert's last update."""
        artefacts = [item for item in alert["evidence"] if item["entityType"] in ("File", "Process")] or [{}]
        last = len(artefacts) - 1
        rows = []
        for index, artefact in enumerate(artefacts):
            processed = max(alert["lastUpdateTime"] - timedelta(seconds=7 * (last - index)), alert["alertCreationTime"])
            rows.append(self.render(alert, artefact, index, processed))
        return rows

    def render(self, alert, artefact, index, processed):
        machine = self.machines[alert["machineId"]]
        short_name, _, domain = machine["computerDnsName"].partition(".")
        user = alert["relatedUser"]
        unique = hashlib.sha256(f"{alert['id']}:{index}".encode()).hexdigest()[:40]
        report_id = int(unique[:8], 16) % 10**7
        primary = index == 0
        antivirus = alert["detectionSource"] == "WindowsDefenderAv" and primary
        status = artefact.get("detectionStatus")
        return {
            "AlertTime": iso(alert["alertCreationTime"]),
            "ComputerDnsName": machine["computerDnsName"],
            "AlertTitle": alert["title"],
            "Category": alert["category"],
            "Severity": alert["severity"],
            "AlertId": alert["id"],
            "Actor": "",
            "LinkToWDATP": f"https://securitycenter.windows.com/alert/{alert['id']}",
            "IocName": "",
            "IocValue": "",
            "CreatorIocName": "",
            "CreatorIocValue": "",
            "Sha1": artefact.get("sha1") or "",
            "FileName": artefact.get("fileName") or "",
            "FilePath": artefact.get("filePath") or "",
            "IpAddress": "",
            "Url": "",
            "IoaDefinitionId": alert["detectorId"],
            "UserName": user["userName"],
            "AlertPart": 0,
            "FullId": f"{alert['id']}:{unique}",
            "LastProcessedTimeUtc": iso(processed),
            "ThreatCategory": alert["category"] if alert["threatName"] and primary else "",
            "ThreatFamily": (alert["threatFamilyName"] or "") if primary else "",
            "ThreatName": (alert["threatName"] or "") if primary else "",
            "RemediationAction": {"Blocked": "block", "Prevented": "quarantine"}.get(status, "") if antivirus else "",
            "RemediationIsSuccess": True if antivirus else None,
            "Source": SOURCE[alert["detectionSource"]],
            "Md5": hashlib.md5(unique.encode()).hexdigest() if artefact else "",  # noqa: S324 - a made-up value
            "Sha256": artefact.get("sha256") or "",
            "WasExecutingWhileDetected": (status == "Blocked") if antivirus else None,
            "UserDomain": user["domainName"],
            "LogOnUsers": f"{user['domainName']}\\{user['userName']}",
            "MachineDomain": domain,
            "MachineName": short_name,
            "InternalIPv4List": machine["lastIpAddress"],
            "InternalIPv6List": "",
            "FileHash": artefact.get("sha1") or "",
            "DeviceID": machine["id"],
            "MachineGroup": machine["rbacGroupName"] or "",
            "Description": alert["description"],
            "DeviceCreatedMachineTags": ", ".join(machine["machineTags"]),
            "CloudCreatedMachineTags": "",
            "CommandLine": artefact.get("processCommandLine") or "",
            "IncidentLinkToWDATP": f"https://securitycenter.windows.com/incidents/{alert['incidentId']}",
            "ReportID": report_id,
            "LinkToMTP": f"https://security.microsoft.com/alert/{alert['id']}",
            "IncidentLinkToMTP": f"https://security.microsoft.com/incidents/{alert['incidentId']}",
            "ExternalId": unique,
            "IocUniqueId": unique,
            "_processed": processed,
            "_machine": machine["id"],
        }
