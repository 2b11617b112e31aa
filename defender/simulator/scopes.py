"""Which resource (v1 `resource`, v2 `scope` without `/.default`) names which simulated API, and its app roles.

Sources: docs/microsoft-api.md (hosts and scopes). Every Defender for Endpoint alias gives a token the
Defender API accepts; the token's `aud` is the resource as asked for, as Entra ID does.
"""

DEFENDER = "defender"
GRAPH = "graph"
SIEM = "siem"

WINDOWS_DEFENDER_ATP_APP_ID = "fc780465-2017-40d4-a0c5-307022471b92"
MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

RESOURCES = {
    "https://api.securitycenter.microsoft.com": DEFENDER,
    "https://securitycenter.onmicrosoft.com/windowsatpservice": DEFENDER,
    "https://api.security.microsoft.com": DEFENDER,
    "https://api.securitycenter.windows.com": DEFENDER,
    "https://api-gcc.securitycenter.microsoft.us": DEFENDER,
    "https://api-gov.securitycenter.microsoft.us": DEFENDER,
    WINDOWS_DEFENDER_ATP_APP_ID: DEFENDER,
    "https://graph.microsoft.com": GRAPH,
    "https://graph.microsoft.us": GRAPH,
    "https://dod-graph.microsoft.us": GRAPH,
    MICROSOFT_GRAPH_APP_ID: GRAPH,
    # Azure AD Graph: the legacy SIEM exporter's resource, served by the v1 endpoint only.
    "https://graph.windows.net": SIEM,
}

# The application permissions each resource defines; a token carries only those of its own resource.
ROLES_BY_API = {
    DEFENDER: {
        "Alert.Read.All",
        "Alert.ReadWrite.All",
        "Machine.Read.All",
        "Machine.ReadWrite.All",
        "AdvancedQuery.Read.All",
    },
    GRAPH: {"SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All", "ThreatHunting.Read.All"},
    SIEM: set(),
}

ALERT_ROLES = ("Alert.ReadWrite.All", "Alert.Read.All")
MACHINE_ROLES = ("Machine.ReadWrite.All", "Machine.Read.All")
SECURITY_ALERT_ROLES = ("SecurityAlert.Read.All", "SecurityAlert.ReadWrite.All")
ADVANCED_QUERY_ROLES = ("AdvancedQuery.Read.All",)
THREAT_HUNTING_ROLES = ("ThreatHunting.Read.All",)


def normalise(resource):
    return resource.strip().rstrip("/").lower()


def api_for(resource):
    """The simulated API a resource or audience names, or None when Entra ID would not know it."""
    return RESOURCES.get(normalise(resource))
