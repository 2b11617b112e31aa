"""Microsoft Graph security alerts: GET /v1.0/security/alerts_v2 and /beta/security/alerts_v2.

The same seed alerts as the Defender API, in Graph's shape: lowerCamel enums, string incident ids and typed evidence
(deviceEvidence carries the device's DNS name, which is not a filter field). Source: defender-api.md section 3.
"""

import uuid

from . import scopes
from .odata import Field, ODataError, parse_count_option, parse_filter
from .paging import page
from .reply import Reply, utc_now
from .seed import iso

SEVERITY = {
    "UnSpecified": "unknown",
    "Informational": "informational",
    "Low": "low",
    "Medium": "medium",
    "High": "high",
}
DETECTION_SOURCE = {
    "WindowsDefenderAtp": "microsoftDefenderForEndpoint",
    "WindowsDefenderAv": "antivirus",
    "CustomDetection": "customDetection",
    "AutomatedInvestigation": "automatedInvestigation",
}


def lower_camel(value):
    return "unknown" if not value else value[0].lower() + value[1:]


FILTER_FIELDS = {
    "assignedTo": Field("assignedTo", "string"),
    "classification": Field("classification", "string", lambda a: lower_camel(a["classification"])),
    "determination": Field("determination", "string", lambda a: lower_camel(a["determination"])),
    "createdDateTime": Field("createdDateTime", "datetime", lambda a: a["alertCreationTime"]),
    "lastUpdateDateTime": Field("lastUpdateDateTime", "datetime", lambda a: a["lastUpdateTime"]),
    "severity": Field("severity", "string", lambda a: SEVERITY[a["severity"]]),
    "serviceSource": Field("serviceSource", "string", lambda a: "microsoftDefenderForEndpoint"),
    "status": Field("status", "string", lambda a: lower_camel(a["status"])),
}
ALERT_PROPERTIES = [
    "id", "providerAlertId", "incidentId", "detectionSource", "detectorId", "tenantId", "title", "description",
    "recommendedActions", "category", "alertWebUrl", "incidentWebUrl", "threatFamilyName", "threatDisplayName",
    "mitreTechniques", "resolvedDateTime", "firstActivityDateTime", "lastActivityDateTime", "comments", "evidence",
    "investigationState", "actorDisplayName", "productName",
]  # fmt: skip


def error(request, status, code, message, headers=None):
    inner = {
        "date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.correlation_id,
    }
    return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers or {})


class GraphAPI:
    def __init__(self, simulator):
        self.simulator = simulator
        self.data = simulator.data
        self.machines = {machine["id"]: machine for machine in self.data.machines}

    def handle(self, request, version, claims):
        granted = set(claims.get("roles", []))
        if not granted & set(scopes.SECURITY_ALERT_ROLES):
            return error(
                request,
                403,
                "Forbidden",
                f"Missing application roles. API required roles: {', '.join(scopes.SECURITY_ALERT_ROLES)}."
                f" application roles in the token: {', '.join(sorted(granted))}.",
            )
        try:
            return self.alerts(request, version)
        except ODataError as exc:
            return error(request, 400, "BadRequest", f"Invalid filter clause: {exc}")

    def alerts(self, request, version):
        params = request.params
        alerts = self.data.alerts
        if params.get("$filter"):
            predicate = parse_filter(
                params["$filter"], FILTER_FIELDS, "microsoft.graph.security.alert", ALERT_PROPERTIES
            )
            alerts = [alert for alert in alerts if predicate(alert)]
        count = params.get("$count", "false").lower()
        if count not in ("true", "false"):
            raise ODataError(f"Invalid value '{params['$count']}' for the $count query option found.")
        top = parse_count_option(params, "$top")
        skip = parse_count_option(params, "$skip")
        drop = self.simulator.faults.drop_next_link()
        items, next_link, page_number = page(request, alerts, top, skip, self.simulator.page_size, drop)
        body = {"@odata.context": f"{request.origin}/{version}/$metadata#security/alerts_v2"}
        if count == "true":
            body["@odata.count"] = len(alerts)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [self.render(alert) for alert in items]
        return Reply(200, body, page=page_number)

    def render(self, alert):
        machine = self.machines[alert["machineId"]]
        tenant = self.data.tenant_id
        created = iso(alert["alertCreationTime"])
        return {
            "@odata.type": "#microsoft.graph.security.alert",
            "id": alert["id"],
            "providerAlertId": alert["id"],
            "incidentId": str(alert["incidentId"]),
            "status": lower_camel(alert["status"]),
            "severity": SEVERITY[alert["severity"]],
            "classification": lower_camel(alert["classification"]),
            "determination": lower_camel(alert["determination"]),
            "serviceSource": "microsoftDefenderForEndpoint",
            "detectionSource": DETECTION_SOURCE[alert["detectionSource"]],
            "productName": "Microsoft Defender for Endpoint",
            "detectorId": alert["detectorId"],
            "tenantId": tenant,
            "title": alert["title"],
            "description": alert["description"],
            "recommendedActions": "Investigate the device's timeline around the alert and isolate it if needed.",
            "category": alert["category"],
            "assignedTo": alert["assignedTo"],
            "alertWebUrl": f"https://security.microsoft.com/alerts/{alert['id']}?tid={tenant}",
            "incidentWebUrl": f"https://security.microsoft.com/incidents/{alert['incidentId']}?tid={tenant}",
            "actorDisplayName": None,
            "threatDisplayName": alert["threatName"],
            "threatFamilyName": alert["threatFamilyName"],
            "mitreTechniques": list(alert["mitreTechniques"]),
            "createdDateTime": created,
            "lastUpdateDateTime": iso(alert["lastUpdateTime"]),
            "resolvedDateTime": iso(alert["resolvedTime"]),
            "firstActivityDateTime": iso(alert["firstEventTime"]),
            "lastActivityDateTime": iso(alert["lastEventTime"]),
            "comments": [],
            "evidence": [self.device_evidence(machine, created)]
            + [self.evidence(item, machine) for item in alert["evidence"]],
            "systemTags": [],
            "additionalData": {},
        }

    @staticmethod
    def device_evidence(machine, created):
        return {
            "@odata.type": "#microsoft.graph.security.deviceEvidence",
            "createdDateTime": created,
            "verdict": "unknown",
            "remediationStatus": "none",
            "remediationStatusDetails": None,
            "roles": [],
            "detailedRoles": ["PrimaryDevice"],
            "tags": list(machine["machineTags"]),
            "firstSeenDateTime": iso(machine["firstSeen"]),
            "mdeDeviceId": machine["id"],
            "azureAdDeviceId": machine["aadDeviceId"],
            "deviceDnsName": machine["computerDnsName"],
            "osPlatform": machine["osPlatform"],
            "osBuild": machine["osBuild"],
            "version": machine["version"],
            "healthStatus": lower_camel(machine["healthStatus"]),
            "riskScore": lower_camel(machine["riskScore"]),
            "rbacGroupId": machine["rbacGroupId"],
            "rbacGroupName": machine["rbacGroupName"],
            "onboardingStatus": lower_camel(machine["onboardingStatus"]),
            "defenderAvStatus": lower_camel(machine["defenderAvStatus"]),
            "ipInterfaces": [machine["lastIpAddress"]],
            "loggedOnUsers": [],
            "vmMetadata": None,
        }

    @staticmethod
    def evidence(item, machine):
        common = {
            "createdDateTime": iso(item["evidenceCreationTime"]),
            "verdict": "suspicious" if item["entityType"] != "User" else "unknown",
            "remediationStatus": "none",
            "remediationStatusDetails": None,
            "roles": [],
            "detailedRoles": [],
            "tags": [],
        }
        if item["entityType"] == "User":
            return {
                "@odata.type": "#microsoft.graph.security.userEvidence",
                **common,
                "userAccount": {
                    "accountName": item["accountName"],
                    "domainName": item["domainName"],
                    "userSid": item["userSid"],
                    "azureAdUserId": item["aadUserId"],
                    "userPrincipalName": item["userPrincipalName"],
                    "displayName": item["accountName"],
                },
            }
        file_details = {
            "sha1": item["sha1"],
            "sha256": item["sha256"],
            "fileName": item["fileName"],
            "filePath": item["filePath"],
            "fileSize": None,
            "filePublisher": None,
            "signer": None,
            "issuer": None,
        }
        if item["entityType"] == "File":
            return {
                "@odata.type": "#microsoft.graph.security.fileEvidence",
                **common,
                "detectionStatus": lower_camel(item["detectionStatus"]),
                "mdeDeviceId": machine["id"],
                "fileDetails": file_details,
            }
        return {
            "@odata.type": "#microsoft.graph.security.processEvidence",
            **common,
            "processId": item["processId"],
            "parentProcessId": item["parentProcessId"],
            "processCommandLine": item["processCommandLine"],
            "processCreationDateTime": iso(item["processCreationTime"]),
            "parentProcessCreationDateTime": iso(item["parentProcessCreationTime"]),
            "detectionStatus": lower_camel(item["detectionStatus"]),
            "mdeDeviceId": machine["id"],
            "imageFile": file_details,
            "parentProcessImageFile": None,
            "userAccount": None,
        }
