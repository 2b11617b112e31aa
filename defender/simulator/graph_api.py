"""Microsoft Graph security alerts: GET /v1.0/security/alerts_v2 and /beta/security/alerts_v2.

The same seed alerts as the Defender API, in Graph's shape: lowerCamel enums, string incident ids and typed evidence
(deviceEvidence carries the device's DNS name, which is not a filter field), plus Defender for Office 365's e-mail
alerts, which are on no machine. `serviceSource` and the `evidence/any(...)` lambda narrow at the server; text compares
case-sensitively; `$top` is capped at 1,000 and `$skip` beyond 500 is refused, so the next link carries a
`$skiptoken`. Source: docs/microsoft-api.md, section 7.
"""

import uuid

from . import scopes
from .odata import Field, ODataError, parse_count_option, parse_filter
from .paging import page
from .reply import Reply, utc_now
from .seed import iso

# Graph security API constraints: $top over 1,000 gives 1,000; $skip over 500 is a 400.
MAX_TOP = 1000
MAX_SKIP = 500
MDE = "microsoftDefenderForEndpoint"

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
    "OfficeATP": "microsoftDefenderForOffice365",
}


def lower_camel(value):
    return "unknown" if not value else value[0].lower() + value[1:]


def _devices(alert):
    """What evidence/any() sees of an alert's devices: the device evidence's filterable properties."""
    if alert.get("machineId") is None:
        return []
    return [
        {
            "@odata.type": "#microsoft.graph.security.deviceEvidence",
            "deviceDnsName": alert["computerDnsName"],
            "mdeDeviceId": alert["machineId"],
        }
    ]


EVIDENCE_FIELDS = {
    "devicednsname": Field("deviceDnsName", "string", case_sensitive=True),
    "mdedeviceid": Field("mdeDeviceId", "string", case_sensitive=True),
}
FILTER_FIELDS = {
    "assignedTo": Field("assignedTo", "string", case_sensitive=True),
    "classification": Field("classification", "string", lambda a: lower_camel(a["classification"]), True),
    "determination": Field("determination", "string", lambda a: lower_camel(a["determination"]), True),
    "createdDateTime": Field("createdDateTime", "datetime", lambda a: a["alertCreationTime"]),
    "lastUpdateDateTime": Field("lastUpdateDateTime", "datetime", lambda a: a["lastUpdateTime"]),
    "severity": Field("severity", "string", lambda a: SEVERITY[a["severity"]], True),
    "serviceSource": Field("serviceSource", "string", lambda a: a.get("serviceSource", MDE), True),
    "status": Field("status", "string", lambda a: lower_camel(a["status"]), True),
    # Not in the documented filter list; peers filter on it (docs/microsoft-api.md: not confirmed).
    "evidence": Field("evidence", "collection", _devices, True, EVIDENCE_FIELDS),
}
ALERT_PROPERTIES = [
    "id", "providerAlertId", "incidentId", "detectionSource", "detectorId", "tenantId", "title", "description",
    "recommendedActions", "category", "alertWebUrl", "incidentWebUrl", "threatFamilyName", "threatDisplayName",
    "mitreTechniques", "resolvedDateTime", "firstActivityDateTime", "lastActivityDateTime", "comments", "evidence",
    "investigationState", "actorDisplayName", "productName",
]  # fmt: skip
ALERT_PROPERTIES.remove("evidence")


def error(request, status, code, message, headers=None):
    inner = {
        "date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": request.correlation_id,
    }
    return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers or {})


def throttled(request, headers):
    """Graph's 429, as its throttling guidance shows it: an inner error naming the status twice."""
    inner = {
        "code": "429",
        "date": utc_now().strftime("%Y-%m-%dT%H:%M:%S"),
        "message": "Please retry after",
        "request-id": str(uuid.uuid4()),
        "status": "429",
    }
    body = {"error": {"code": "TooManyRequests", "innerError": inner, "message": "Please retry again later."}}
    return Reply(429, body, headers)


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
        alerts = self.data.alerts + self.data.email_alerts
        alerts.sort(key=lambda alert: (alert["alertCreationTime"], alert["id"]))
        if params.get("$filter"):
            predicate = parse_filter(
                params["$filter"], FILTER_FIELDS, "microsoft.graph.security.alert", ALERT_PROPERTIES
            )
            alerts = [alert for alert in alerts if predicate(alert)]
        count = params.get("$count", "false").lower()
        if count not in ("true", "false"):
            raise ODataError(f"Invalid value '{params['$count']}' for the $count query option found.")
        top = parse_count_option(params, "$top")
        top = min(top, MAX_TOP) if top is not None else None
        skip = parse_count_option(params, "$skip")
        if skip is not None and skip > MAX_SKIP:
            raise ODataError(f"The $skip query option cannot be larger than {MAX_SKIP}; use @odata.nextLink to page.")
        if "$skiptoken" in params:
            skip = parse_count_option(params, "$skiptoken")
        drop = self.simulator.faults.drop_next_link()
        items, next_link, page_number = page(
            request, alerts, top, skip, min(self.simulator.page_size, MAX_TOP), drop, "$skiptoken"
        )
        body = {"@odata.context": f"{request.origin}/{version}/$metadata#security/alerts_v2"}
        if count == "true":
            body["@odata.count"] = len(alerts)
        if next_link:
            body["@odata.nextLink"] = next_link
        body["value"] = [self.render(alert) for alert in items]
        return Reply(200, body, page=page_number)

    def render(self, alert):
        if alert.get("serviceSource") == "microsoftDefenderForOffice365":
            return self.render_email(alert)
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
            "alertPolicyId": None,
            "comments": [],
            "evidence": [self.device_evidence(machine, created, alert)]
            + [self.evidence(item, machine) for item in alert["evidence"]],
            "systemTags": [],
            "additionalData": {},
        }

    def render_email(self, alert):
        """A Defender for Office 365 alert: mailbox, message and URL evidence, no device."""
        tenant = self.data.tenant_id
        created = iso(alert["alertCreationTime"])
        common = {
            "createdDateTime": created,
            "remediationStatusDetails": None,
            "detailedRoles": [],
            "tags": [],
        }
        return {
            "@odata.type": "#microsoft.graph.security.alert",
            "id": alert["id"],
            "providerAlertId": alert["id"][2:],
            "incidentId": str(alert["incidentId"]),
            "status": lower_camel(alert["status"]),
            "severity": SEVERITY[alert["severity"]],
            "classification": "unknown",
            "determination": "unknown",
            "serviceSource": "microsoftDefenderForOffice365",
            "detectionSource": DETECTION_SOURCE[alert["detectionSource"]],
            "productName": "Microsoft Defender for Office 365",
            "detectorId": alert["detectorId"],
            "tenantId": tenant,
            "title": alert["title"],
            "description": alert["description"],
            "recommendedActions": None,
            "category": alert["category"],
            "assignedTo": None,
            "alertWebUrl": f"https://security.microsoft.com/alerts/{alert['id']}?tid={tenant}",
            "incidentWebUrl": f"https://security.microsoft.com/incidents/{alert['incidentId']}?tid={tenant}",
            "actorDisplayName": None,
            "threatDisplayName": None,
            "threatFamilyName": None,
            "mitreTechniques": list(alert["mitreTechniques"]),
            "createdDateTime": created,
            "lastUpdateDateTime": iso(alert["lastUpdateTime"]),
            "resolvedDateTime": None,
            "firstActivityDateTime": iso(alert["firstEventTime"]),
            "lastActivityDateTime": iso(alert["lastEventTime"]),
            "alertPolicyId": None,
            "comments": [],
            "evidence": [
                {
                    "@odata.type": "#microsoft.graph.security.mailboxEvidence",
                    **common,
                    "verdict": "unknown",
                    "remediationStatus": "none",
                    "roles": ["destination"],
                    "displayName": alert["recipient"].partition("@")[0],
                    "primaryAddress": alert["recipient"],
                    "upn": alert["recipient"],
                    "userAccount": None,
                },
                {
                    "@odata.type": "#microsoft.graph.security.analyzedMessageEvidence",
                    **common,
                    "verdict": "malicious",
                    "remediationStatus": "remediated",
                    "roles": [],
                    "networkMessageId": alert["networkMessageId"],
                    "internetMessageId": f"<{alert['networkMessageId']}@{alert['sender'].partition('@')[2]}>",
                    "subject": alert["title"],
                    "language": "en",
                    "senderIp": alert["senderIp"],
                    "recipientEmailAddress": alert["recipient"],
                    "antiSpamDirection": "inbound",
                    "deliveryAction": "delivered",
                    "deliveryLocation": "inbox",
                    "urn": f"urn:MailEntity:{alert['networkMessageId'].replace('-', '')}",
                    "threats": ["Phish"],
                    "threatDetectionMethods": ["urlDetonationReputation"],
                    "urls": [alert["url"]],
                    "urlCount": 1,
                    "attachmentsCount": 0,
                    "receivedDateTime": iso(alert["received"]),
                    "p1Sender": {
                        "emailAddress": alert["sender"],
                        "displayName": None,
                        "domainName": alert["sender"].partition("@")[2],
                    },
                    "p2Sender": None,
                },
                {
                    "@odata.type": "#microsoft.graph.security.urlEvidence",
                    **common,
                    "verdict": "malicious",
                    "remediationStatus": "none",
                    "roles": [],
                    "url": alert["url"],
                },
            ],
            "systemTags": [],
            "additionalData": {},
        }

    @staticmethod
    def device_evidence(machine, created, alert):
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
            "loggedOnUsers": [dict(user) for user in alert["loggedOnUsers"]],
            "vmMetadata": None,
        }

    @staticmethod
    def evidence(item, machine):
        detection = item.get("detectionStatus")
        common = {
            "createdDateTime": iso(item["evidenceCreationTime"]),
            "verdict": "suspicious" if item["entityType"] != "User" else "unknown",
            "remediationStatus": lower_camel(detection) if detection in ("Blocked", "Prevented") else "none",
            "remediationStatusDetails": None,
            "roles": [],
            "detailedRoles": [],
            "tags": [],
        }
        if item["entityType"] == "Ip":
            return {
                "@odata.type": "#microsoft.graph.security.ipEvidence",
                **common,
                "ipAddress": item["ipAddress"],
                "countryLetterCode": None,
            }
        if item["entityType"] == "Url":
            return {"@odata.type": "#microsoft.graph.security.urlEvidence", **common, "url": item["url"]}
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

        def details(name, path, sha1=None, sha256=None):
            return {
                "sha1": sha1,
                "sha256": sha256,
                "fileName": name,
                "filePath": path,
                "fileSize": None,
                "filePublisher": None,
                "signer": None,
                "issuer": None,
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
            "parentProcessImageFile": details(item.get("parentProcessFileName"), item.get("parentProcessFilePath"))
            if item.get("parentProcessFileName")
            else None,
            "userAccount": None,
        }
