"""The legacy SIEM alert exporter: GET /api/alerts with a v1 token for https://graph.windows.net.

A bare JSON array of PascalCase alerts, filtered on LastProcessedTimeUtc (the alert's last update). Without
sinceTimeUtc or ago the exporter answers for the last 2 hours. Source: defender-api.md section 1, "Legacy SIEM API".
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


def error(request, status, code, message):
    return Reply(status, {"error": {"code": code, "message": message, "target": request.correlation_id}})


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
            return error(request, 400, "BadRequest", str(exc))
        tags = {value.lower() for name, value in request.multi_params if name.lower() == "devicecreatedmachinetags"}
        alerts = [
            alert
            for alert in self.data.alerts
            if alert["lastUpdateTime"] >= since and (until is None or alert["lastUpdateTime"] <= until)
        ]
        if tags:
            alerts = [a for a in alerts if tags & {t.lower() for t in self.machines[a["machineId"]]["machineTags"]}]
        alerts.sort(key=lambda alert: (alert["lastUpdateTime"], alert["id"]))
        if limit is not None:
            alerts = alerts[-int(limit) :] if int(limit) else []
        return Reply(200, [self.render(alert) for alert in alerts])

    def render(self, alert):
        machine = self.machines[alert["machineId"]]
        short_name, _, domain = machine["computerDnsName"].partition(".")
        files = [item for item in alert["evidence"] if item["entityType"] in ("File", "Process")]
        artefact = files[0] if files else {}
        user = alert["relatedUser"]
        report_id = int(hashlib.sha1(alert["id"].encode()).hexdigest()[:8], 16) % 10**7  # noqa: S324 - not security
        return {
            "AlertTime": iso(alert["alertCreationTime"]),
            "ComputerDnsName": machine["computerDnsName"],
            "AlertTitle": alert["title"],
            "Category": alert["category"],
            "Severity": alert["severity"],
            "AlertId": alert["id"],
            "Actor": None,
            "LinkToWDATP": f"https://securitycenter.windows.com/alert/{alert['id']}",
            "IocName": None,
            "IocValue": None,
            "CreatorIocName": None,
            "CreatorIocValue": None,
            "Sha1": artefact.get("sha1"),
            "FileName": artefact.get("fileName"),
            "FilePath": artefact.get("filePath"),
            "IpAddress": None,
            "Url": None,
            "IoaDefinitionId": alert["detectorId"],
            "UserName": user["userName"],
            "AlertPart": 0,
            "FullId": f"{alert['id']}:{alert['detectorId']}",
            "LastProcessedTimeUtc": iso(alert["lastUpdateTime"]),
            "ThreatCategory": alert["category"] if alert["threatName"] else None,
            "ThreatFamily": alert["threatFamilyName"],
            "ThreatName": alert["threatName"],
            "RemediationAction": None,
            "RemediationIsSuccess": None,
            "Source": SOURCE[alert["detectionSource"]],
            "Md5": None,
            "Sha256": artefact.get("sha256"),
            "WasExecutingWhileDetected": None,
            "UserDomain": user["domainName"],
            "LogOnUsers": f"{user['domainName']}\\{user['userName']}",
            "MachineDomain": domain or None,
            "MachineName": short_name,
            "InternalIPv4List": machine["lastIpAddress"],
            "InternalIPv6List": None,
            "FileHash": artefact.get("sha1"),
            "DeviceID": machine["id"],
            "MachineGroup": machine["rbacGroupName"],
            "Description": alert["description"],
            "DeviceCreatedMachineTags": ", ".join(machine["machineTags"]) or None,
            "CloudCreatedMachineTags": None,
            "CommandLine": artefact.get("processCommandLine"),
            "IncidentLinkToWDATP": f"https://securitycenter.windows.com/incidents/{alert['incidentId']}",
            "ReportID": report_id,
            "LinkToMTP": f"https://security.microsoft.com/alert/{alert['id']}",
            "IncidentLinkToMTP": f"https://security.microsoft.com/incidents/{alert['incidentId']}",
            "ExternalId": alert["id"],
        }
