"""The simulator behaves like Entra ID and the Defender, Graph and SIEM APIs as docs/microsoft-api.md
documents them: real msal and requests over real HTTPS against the session simulator."""

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import msal
import pytest
import requests

from defender.simulator import Simulator, closed_port, silent_listener
from defender.simulator.odata import Field, ODataError, parse_filter
from defender.simulator.tokens import decode_claims

DEFENDER_SCOPE = "https://api.securitycenter.microsoft.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
SIEM_RESOURCE = "https://graph.windows.net"


@pytest.fixture
def msal_env(monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE override a session's verify=, which is how msal passes the CA (sheet §6).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def msal_app(sim, credential, tenant=None, secret=None):
    return msal.ConfidentialClientApplication(
        credential.client_id,
        client_credential=secret or credential.client_secret,
        authority=f"{sim.auth_url}/{tenant or sim.tenant_id}",
        instance_discovery=False,
        verify=sim.ca_path,
        http_cache={},
    )


def post_token(sim, credential=None, tenant=None, v1=False, **form):
    credential = credential or sim.app
    fields = {"grant_type": "client_credentials", "client_id": credential.client_id}
    fields["client_secret"] = credential.client_secret
    fields.update(form)
    path = "oauth2/token" if v1 else "oauth2/v2.0/token"
    return requests.post(f"{sim.auth_url}/{tenant or sim.tenant_id}/{path}", data=fields, verify=sim.ca_path, timeout=5)


def token(sim, credential=None, scope=DEFENDER_SCOPE):
    response = post_token(sim, credential, scope=scope)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api(sim, path, access_token=None, base_url=None, **params):
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    url = f"{base_url or sim.base_url}{path}"
    return requests.get(url, params=params, headers=headers, verify=sim.ca_path, timeout=5)


def siem_api(sim, access_token=None, **params):
    """GET /api/alerts on the SIEM exporter's own listener."""
    return api(sim, "/api/alerts", access_token, base_url=sim.siem_base_url, **params)


def assert_aadsts(response, status, error, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    description = body["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    for line in ("\r\nTrace ID: ", "\r\nCorrelation ID: ", "\r\nTimestamp: "):
        assert line in description
    assert body["trace_id"] and body["correlation_id"] and body["timestamp"]
    assert body["error_uri"] == f"https://login.microsoftonline.com/error?code={code}"
    return body


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text):
    return datetime.fromisoformat(text)


# Entra ID


def test_msal_gets_a_defender_token_with_roles_aud_tid_and_exp(simulator, msal_env):
    result = msal_app(simulator, simulator.app).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    claims = decode_claims(result["access_token"])
    assert claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert claims["tid"] == simulator.tenant_id
    assert claims["azp"] == simulator.app.client_id and claims["ver"] == "2.0"
    assert sorted(claims["roles"]) == ["AdvancedQuery.Read.All", "Alert.Read.All", "Machine.Read.All"]
    assert claims["nbf"] <= time.time() < claims["exp"] <= claims["iat"] + 3599


def test_msal_accepts_the_tenant_domain_and_a_graph_token_carries_only_graph_roles(simulator, msal_env):
    app = msal_app(simulator, simulator.app, tenant=simulator.tenant_domain)
    claims = decode_claims(app.acquire_token_for_client(scopes=[GRAPH_SCOPE])["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com" and sorted(claims["roles"]) == [
        "SecurityAlert.Read.All",
        "ThreatHunting.Read.All",
    ]


@pytest.mark.parametrize(
    "resource",
    [
        "https://api.securitycenter.microsoft.com",
        "https://securitycenter.onmicrosoft.com/windowsatpservice",
        "https://api.security.microsoft.com",
        "https://api.securitycenter.windows.com",
        "https://api-gcc.securitycenter.microsoft.us",
        "https://api-gov.securitycenter.microsoft.us",
    ],
)
def test_every_documented_defender_scope_gives_a_token_the_defender_api_accepts(simulator, resource):
    access_token = token(simulator, scope=f"{resource}/.default")
    assert decode_claims(access_token)["aud"] == resource
    assert api(simulator, "/api/machines", access_token).status_code == 200


def test_v1_token_for_the_siem_resource_echoes_it_and_gives_expires_in_as_a_string(simulator):
    response = post_token(simulator, v1=True, resource=SIEM_RESOURCE)
    body = response.json()
    assert response.status_code == 200
    assert body["resource"] == SIEM_RESOURCE and body["expires_in"] == "3599" and body["token_type"] == "Bearer"
    claims = decode_claims(body["access_token"])
    assert claims["ver"] == "1.0" and claims["appid"] == simulator.app.client_id and "roles" not in claims


def test_siem_resource_is_served_by_the_v1_endpoint_only(simulator):
    assert_aadsts(post_token(simulator, scope=f"{SIEM_RESOURCE}/.default"), 400, "invalid_scope", 70011)


def test_openid_configuration_points_back_at_the_simulator(simulator):
    response = requests.get(
        f"{simulator.auth_url}/{simulator.tenant_domain}/v2.0/.well-known/openid-configuration",
        verify=simulator.ca_path,
        timeout=5,
    )
    config = response.json()
    assert config["token_endpoint"] == f"{simulator.base_url}/{simulator.tenant_id}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].startswith(simulator.base_url)
    assert config["issuer"] == f"{simulator.base_url}/{simulator.tenant_id}/v2.0"


def test_unknown_tenant_fails_discovery_with_invalid_tenant_aadsts90002(simulator, msal_env):
    unknown = "0b0b0b0b-1111-4222-8333-444444444444"
    response = requests.get(
        f"{simulator.auth_url}/{unknown}/v2.0/.well-known/openid-configuration", verify=simulator.ca_path, timeout=5
    )
    assert_aadsts(response, 400, "invalid_tenant", 90002)
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(simulator, simulator.app, tenant=unknown)


def test_unknown_tenant_at_the_token_endpoint_gets_invalid_request_aadsts90002(simulator):
    response = post_token(simulator, tenant="fabrikam.onmicrosoft.com", scope=DEFENDER_SCOPE)
    assert_aadsts(response, 400, "invalid_request", 90002)


def test_unknown_app_gets_aadsts700016_unauthorized_client(simulator, msal_env):
    stranger = type(simulator.app)("stranger", "5e5e5e5e-0000-4000-8000-000000000000", "sim~x", "", ())
    result = msal_app(simulator, stranger).acquire_token_for_client(scopes=[DEFENDER_SCOPE])
    assert result["error"] == "unauthorized_client" and result["error_codes"] == [700016]
    assert_aadsts(post_token(simulator, stranger, scope=DEFENDER_SCOPE), 400, "unauthorized_client", 700016)


def test_wrong_secret_gets_aadsts7000215_with_401(simulator, msal_env):
    # The classic mistake: pasting the secret's ID instead of its value.
    result = msal_app(simulator, simulator.app, secret=simulator.app.secret_id).acquire_token_for_client(
        scopes=[DEFENDER_SCOPE]
    )
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000215]
    response = post_token(simulator, scope=DEFENDER_SCOPE, client_secret=simulator.app.secret_id)
    body = assert_aadsts(response, 401, "invalid_client", 7000215)
    assert simulator.app.client_secret not in response.text and "secret ID" in body["error_description"]


def test_expired_secret_gets_aadsts7000222_with_401(simulator):
    response = post_token(simulator, simulator.app_expired_secret, scope=DEFENDER_SCOPE)
    assert_aadsts(response, 401, "invalid_client", 7000222)


def test_unknown_resource_gets_aadsts500011_invalid_resource(simulator):
    assert_aadsts(post_token(simulator, scope="https://api.contoso.example/.default"), 400, "invalid_resource", 500011)
    response = post_token(simulator, v1=True, resource="https://api.contoso.example")
    assert_aadsts(response, 400, "invalid_resource", 500011)


def test_scope_without_default_gets_aadsts1002012(simulator):
    response = post_token(simulator, scope="https://api.securitycenter.microsoft.com/Alert.Read.All")
    assert_aadsts(response, 400, "invalid_scope", 1002012)


def test_invalid_or_missing_scope_gets_aadsts70011_invalid_scope(simulator):
    assert_aadsts(post_token(simulator, scope="Alert.Read.All"), 400, "invalid_scope", 70011)
    assert_aadsts(post_token(simulator, scope=f"{DEFENDER_SCOPE} {GRAPH_SCOPE}"), 400, "invalid_scope", 70011)
    assert_aadsts(post_token(simulator, scope=""), 400, "invalid_scope", 70011)


def test_a_token_past_its_configured_lifetime_gets_401(clean_simulator):
    clean_simulator.token_lifetime = 0
    response = post_token(clean_simulator, scope=DEFENDER_SCOPE)
    assert response.json()["expires_in"] == 0
    response = api(clean_simulator, "/api/alerts", response.json()["access_token"])
    assert response.status_code == 401 and response.json()["error"]["code"] == "Unauthorized"


def test_token_requests_are_counted_per_app_and_endpoint(clean_simulator):
    post_token(clean_simulator, scope=DEFENDER_SCOPE)
    post_token(clean_simulator, clean_simulator.app_without_roles, v1=True, resource=SIEM_RESOURCE)
    assert clean_simulator.token_requests == 2
    assert clean_simulator.token_requests_by_endpoint == {"v2.0": 1, "v1": 1}
    assert clean_simulator.token_requests_by_app == {
        clean_simulator.app.client_id: 1,
        clean_simulator.app_without_roles.client_id: 1,
    }


# Defender for Endpoint API


@pytest.fixture(scope="module")
def defender_token(simulator):
    return token(simulator)


def test_machine_filter_eq_matches_the_fqdn_only(simulator, defender_token):
    exact = api(
        simulator, "/api/machines", defender_token, **{"$filter": "computerDnsName eq 'ws-fin-07.corp.contoso.com'"}
    )
    assert [m["computerDnsName"] for m in exact.json()["value"]] == ["ws-fin-07.corp.contoso.com"]
    short = api(simulator, "/api/machines", defender_token, **{"$filter": "computerDnsName eq 'ws-fin-07'"})
    assert short.json()["value"] == []


def test_machine_filter_startswith_finds_the_short_name_and_its_lookalike_in_the_same_case_only(
    simulator, defender_token
):
    response = api(
        simulator, "/api/v1.0/machines", defender_token, **{"$filter": "startswith(computerDnsName,'ws-fin-07')"}
    )
    assert response.status_code == 200
    names = sorted(m["computerDnsName"] for m in response.json()["value"])
    assert names == ["ws-fin-07.corp.contoso.com", "ws-fin-071.corp.contoso.com"]
    assert response.json()["@odata.context"].endswith("/api/v1.0/$metadata#Machines")
    upper = api(
        simulator, "/api/v1.0/machines", defender_token, **{"$filter": "startswith(computerDnsName,'WS-FIN-07')"}
    )
    assert upper.status_code == 200 and upper.json()["value"] == []


def test_machine_by_id_or_computer_name_and_404_when_unknown(simulator, defender_token):
    machine = next(m for m in simulator.machines if m["computerDnsName"] == "dc-01.corp.contoso.com")
    by_id = api(simulator, f"/api/machines/{machine['id']}", defender_token).json()
    by_name = api(simulator, "/api/machines/dc-01.corp.contoso.com", defender_token).json()
    assert by_id["id"] == by_name["id"] == machine["id"]
    missing = api(simulator, "/api/machines/no-such-host", defender_token)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ResourceNotFound" and missing.json()["error"]["target"]


def test_machine_alerts_are_that_machines_alerts(simulator, defender_token):
    machine = next(m for m in simulator.machines if m["computerDnsName"].startswith("lobby-kiosk-renamed"))
    response = api(simulator, f"/api/machines/{machine['id']}/alerts", defender_token)
    alerts = response.json()["value"]
    assert alerts and {a["machineId"] for a in alerts} == {machine["id"]}
    assert len(alerts) == len([a for a in simulator.alerts if a["machineId"] == machine["id"]])
    assert api(simulator, "/api/machines/nobody/alerts", defender_token).status_code == 404


def test_actor_hostnames_include_a_short_name_and_one_known_only_by_its_alternate(simulator):
    pairs = dict(simulator.actor_hostnames())
    names = {m["computerDnsName"] for m in simulator.machines}
    assert "ws-fin-07" in pairs and "ws-fin-07" not in names and "ws-fin-07.corp.contoso.com" in names
    assert pairs["kiosk-lobby-01"] in names
    assert not any(name.startswith("kiosk-lobby-01") for name in names)


def test_alerts_reject_a_computer_dns_name_filter_with_400_odata_error(simulator, defender_token):
    response = api(
        simulator, "/api/alerts", defender_token, **{"$filter": "computerDnsName eq 'dc-01.corp.contoso.com'"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "ODataError" and "computerDnsName" in error["message"] and error["target"]


def test_alerts_filter_on_unknown_field_names_it(simulator, defender_token):
    response = api(simulator, "/api/alerts", defender_token, **{"$filter": "hostname eq 'x'"})
    assert response.status_code == 400 and "'hostname'" in response.json()["error"]["message"]


def test_alerts_time_filter_with_ge_lt_and_returns_the_window(simulator, defender_token):
    now = datetime.now(UTC)
    since, until = now - timedelta(days=10), now - timedelta(days=3)
    window = f"alertCreationTime ge {iso(since)} and alertCreationTime lt {iso(until)} and status ne 'Resolved'"
    response = api(simulator, "/api/alerts", defender_token, **{"$filter": window})
    got = {a["id"] for a in response.json()["value"]}
    expected = {
        a["id"]
        for a in simulator.alerts
        if since <= parse(a["alertCreationTime"]) < until and a["status"] != "Resolved"
    }
    assert got == expected and got


def test_alerts_filter_refuses_a_quoted_datetime(simulator, defender_token):
    response = api(simulator, "/api/alerts", defender_token, **{"$filter": "lastUpdateTime ge '2024-01-01T00:00:00Z'"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "ODataError"


def test_top_skip_and_next_link_page_through_every_alert_once(simulator, defender_token):
    url, seen, pages = f"{simulator.base_url}/api/alerts?$top=7&$orderby=alertCreationTime desc", [], 0
    headers = {"Authorization": f"Bearer {defender_token}"}
    while url:
        body = requests.get(url, headers=headers, verify=simulator.ca_path, timeout=5).json()
        seen += [a["id"] for a in body["value"]]
        url, pages = body.get("@odata.nextLink"), pages + 1
    assert sorted(seen) == sorted(a["id"] for a in simulator.alerts) and len(seen) == len(set(seen))
    assert pages == -(-len(simulator.alerts) // 7)


def test_server_page_size_emits_an_absolute_next_link_without_top(clean_simulator, defender_token):
    clean_simulator.page_size = 25
    body = api(clean_simulator, "/api/alerts", defender_token, **{"$filter": "severity ne 'High'"}).json()
    assert len(body["value"]) == 25
    assert body["@odata.nextLink"].startswith(f"{clean_simulator.base_url}/api/alerts?")
    assert "$skip=25" in body["@odata.nextLink"] and "severity" in body["@odata.nextLink"]


def test_top_above_10000_is_400(simulator, defender_token):
    response = api(simulator, "/api/alerts", defender_token, **{"$top": "10001"})
    assert response.status_code == 400 and "10000" in response.json()["error"]["message"]


def test_evidence_comes_with_expand_only(simulator, defender_token):
    plain = api(simulator, "/api/alerts", defender_token, **{"$top": "3"}).json()["value"]
    expanded = api(simulator, "/api/alerts", defender_token, **{"$top": "3", "$expand": "evidence"}).json()["value"]
    assert all(a["evidence"] == [] for a in plain) and all(a["evidence"] for a in expanded)


def test_api_without_a_token_gets_401(simulator):
    response = api(simulator, "/api/alerts")
    assert response.status_code == 401 and response.json()["error"]["code"] == "Unauthorized"


def test_a_token_for_another_audience_gets_401_everywhere(simulator, defender_token):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    assert api(simulator, "/api/alerts", graph_token).status_code == 401
    assert api(simulator, "/api/machines", graph_token).status_code == 401
    response = api(simulator, "/v1.0/security/alerts_v2", defender_token)
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"
    siem_token = post_token(simulator, v1=True, resource=SIEM_RESOURCE).json()["access_token"]
    assert api(simulator, "/api/machines", siem_token).status_code == 401


def test_a_tampered_token_gets_401(simulator, defender_token):
    header, claims, signature = defender_token.split(".")
    forged = ".".join([header, claims, signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")])
    assert api(simulator, "/api/alerts", forged).status_code == 401


def test_missing_roles_get_403_forbidden(simulator):
    no_machine_role = token(simulator, simulator.app_without_machine_role)
    assert api(simulator, "/api/alerts", no_machine_role).status_code == 200
    response = api(simulator, "/api/machines", no_machine_role)
    assert response.status_code == 403 and response.json()["error"]["code"] == "Forbidden"
    assert "Machine.Read.All" in response.json()["error"]["message"]
    no_roles = token(simulator, simulator.app_without_roles)
    assert "roles" not in decode_claims(no_roles)
    assert api(simulator, "/api/alerts", no_roles).status_code == 403
    graph_no_roles = token(simulator, simulator.app_without_roles, GRAPH_SCOPE)
    response = api(simulator, "/v1.0/security/alerts_v2", graph_no_roles)
    assert response.status_code == 403 and response.json()["error"]["code"] == "Forbidden"


def test_a_v1_defender_token_reaches_the_defender_answer_on_api_alerts(simulator):
    body = post_token(simulator, v1=True, resource="https://api.securitycenter.windows.com").json()
    response = api(simulator, "/api/alerts", body["access_token"], **{"$top": "1"})
    assert "@odata.context" in response.json()


# Graph alerts_v2 and the SIEM exporter


def test_graph_alerts_v2_carry_device_evidence_and_page(simulator):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    mde = "$filter=serviceSource eq 'microsoftDefenderForEndpoint'"
    url, seen = f"{simulator.base_url}/beta/security/alerts_v2?$top=30&$count=true&{mde}", []
    headers = {"Authorization": f"Bearer {graph_token}"}
    while url:
        body = requests.get(url, headers=headers, verify=simulator.ca_path, timeout=5).json()
        assert body["@odata.count"] == len(simulator.alerts)
        seen += body["value"]
        url = body.get("@odata.nextLink")
    assert len(seen) == len(simulator.alerts)
    alert = seen[0]
    devices = [e for e in alert["evidence"] if e["@odata.type"] == "#microsoft.graph.security.deviceEvidence"]
    assert devices[0]["deviceDnsName"] == next(a["computerDnsName"] for a in simulator.alerts if a["id"] == alert["id"])
    kinds = {e["@odata.type"].rsplit(".", 1)[1] for a in seen for e in a["evidence"]}
    assert {"deviceEvidence", "fileEvidence", "processEvidence"} <= kinds
    assert {a["severity"] for a in seen} <= {"unknown", "informational", "low", "medium", "high"}


def test_graph_filters_on_documented_fields_only(simulator):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    since = iso(datetime.now(UTC) - timedelta(days=7))
    response = api(
        simulator,
        "/v1.0/security/alerts_v2",
        graph_token,
        **{"$filter": f"createdDateTime ge {since} and status eq 'new'"},
    )
    assert response.status_code == 200 and response.json()["value"]
    assert {a["status"] for a in response.json()["value"]} == {"new"}
    for field in ("investigationState eq 'running'", "deviceDnsName eq 'dc-01.corp.contoso.com'"):
        response = api(simulator, "/v1.0/security/alerts_v2", graph_token, **{"$filter": field})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "BadRequest" and set(error["innerError"]) >= {"date", "request-id"}


def test_siem_returns_a_bare_pascal_case_array_honouring_since_and_limit(simulator):
    siem_token = post_token(simulator, v1=True, resource=SIEM_RESOURCE).json()["access_token"]
    since = datetime.now(UTC) - timedelta(days=5)
    alerts = siem_api(simulator, siem_token, sinceTimeUtc=iso(since)).json()
    assert isinstance(alerts, list) and alerts
    assert all(parse(a["LastProcessedTimeUtc"]) >= since for a in alerts)
    assert {"AlertId", "AlertTitle", "ComputerDnsName", "MachineName", "Severity", "DeviceID", "LinkToWDATP"} <= set(
        alerts[0]
    )
    limited = siem_api(simulator, siem_token, sinceTimeUtc=iso(since), limit="3").json()
    assert [a["AlertId"] for a in limited] == [a["AlertId"] for a in alerts[-3:]]


def test_siem_defaults_to_the_last_two_hours_and_takes_ago(simulator):
    siem_token = post_token(simulator, v1=True, resource=SIEM_RESOURCE).json()["access_token"]
    recent = siem_api(simulator, siem_token).json()
    cutoff = datetime.now(UTC) - timedelta(hours=2, minutes=1)
    assert recent and all(parse(a["LastProcessedTimeUtc"]) >= cutoff for a in recent)
    day = siem_api(simulator, siem_token, ago="P1D").json()
    assert len(day) >= len(recent)
    assert siem_api(simulator, siem_token, ago="ten minutes").status_code == 400


def test_the_three_views_agree_on_ids_titles_times_and_machines(simulator, defender_token):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    siem_token = post_token(simulator, v1=True, resource=SIEM_RESOURCE).json()["access_token"]
    mde = {a["id"]: a for a in api(simulator, "/api/alerts", defender_token).json()["value"]}
    mde_only = {"$filter": "serviceSource eq 'microsoftDefenderForEndpoint'"}
    graph = {a["id"]: a for a in api(simulator, "/v1.0/security/alerts_v2", graph_token, **mde_only).json()["value"]}
    siem = {a["AlertId"]: a for a in siem_api(simulator, siem_token, ago="P31D").json()}
    assert set(mde) == set(graph) == set(siem)
    for alert_id, alert in mde.items():
        device = next(e for e in graph[alert_id]["evidence"] if "deviceEvidence" in e["@odata.type"])
        assert alert["title"] == graph[alert_id]["title"] == siem[alert_id]["AlertTitle"]
        assert alert["alertCreationTime"] == graph[alert_id]["createdDateTime"] == siem[alert_id]["AlertTime"]
        assert alert["computerDnsName"] == device["deviceDnsName"] == siem[alert_id]["ComputerDnsName"]
        assert alert["machineId"] == device["mdeDeviceId"] == siem[alert_id]["DeviceID"]


# Seed data


def test_seed_data_looks_real_and_covers_every_severity_status_and_platform(simulator):
    alerts = simulator.alerts
    assert {a["severity"] for a in alerts} == {"UnSpecified", "Informational", "Low", "Medium", "High"}
    assert {a["status"] for a in alerts} == {"New", "InProgress", "Resolved"}
    assert {"CredentialAccess", "Execution", "Persistence", "DefenseEvasion", "LateralMovement", "Discovery"} <= {
        a["category"] for a in alerts
    }
    assert {"WindowsDefenderAtp", "WindowsDefenderAv", "CustomDetection", "AutomatedInvestigation"} <= {
        a["detectionSource"] for a in alerts
    }
    assert "T1003.001" in {t for a in alerts for t in a["mitreTechniques"]}
    assert {m["osPlatform"] for m in simulator.machines} >= {"Windows11", "Linux", "macOS"}
    oldest = min(parse(a["alertCreationTime"]) for a in alerts)
    assert datetime.now(UTC) - oldest < timedelta(days=30, minutes=5)
    assert all(app.client_secret.startswith("sim~") for app in (simulator.app, simulator.app_without_roles))


def test_same_seed_gives_the_same_data_and_another_seed_differs(simulator):
    again, other = Simulator(seed=1), Simulator(seed=2)
    assert again.tenant_id == simulator.tenant_id and again.app.client_id == simulator.app.client_id
    assert [m["id"] for m in again.machines] == [m["id"] for m in simulator.machines]
    assert [(a["id"], a["title"]) for a in again.alerts] == [(a["id"], a["title"]) for a in simulator.alerts]
    assert other.tenant_id != simulator.tenant_id
    assert {a["id"] for a in other.alerts}.isdisjoint(a["id"] for a in simulator.alerts)


def test_the_bulk_machine_has_n_alerts_and_the_rest_is_unchanged(simulator, tmp_path):
    with Simulator(seed=1, alerts_on_bulk_machine=1500, ca_path=tmp_path / "ca.pem") as bulk:
        access_token = token(bulk)
        response = api(
            bulk, f"/api/machines/{bulk.bulk_hostname}.corp.contoso.com/alerts", access_token, **{"$top": "2000"}
        )
        assert len(response.json()["value"]) == 1500
        assert (bulk.bulk_hostname, "") in bulk.actor_hostnames()
        others = [a["id"] for a in bulk.alerts if not a["computerDnsName"].startswith(bulk.bulk_hostname)]
        assert others == [a["id"] for a in simulator.alerts]


# Faults


def test_throttle_every_nth_call_gives_429_with_retry_after(clean_simulator, defender_token):
    clean_simulator.faults.set(throttle_every=3, retry_after=7)
    statuses = [api(clean_simulator, "/api/machines", defender_token) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429]
    assert statuses[2].headers["Retry-After"] == "7"
    assert statuses[2].json()["error"]["code"] == "TooManyRequests"


def test_rate_limit_per_minute_answers_429_beyond_the_budget(clean_simulator, defender_token):
    clean_simulator.faults.set(rate_limit_per_minute=4)
    statuses = [api(clean_simulator, "/api/machines", defender_token).status_code for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2


def test_fail_next_gives_500_then_503_with_retry_after_then_recovers(clean_simulator, defender_token):
    clean_simulator.faults.set(fail_next=1, fail_status=500)
    assert api(clean_simulator, "/api/alerts", defender_token).status_code == 500
    clean_simulator.faults.set(fail_next=2, fail_status=503, fail_retry_after=2)
    failed = api(clean_simulator, "/api/alerts", defender_token)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
    assert api(clean_simulator, "/api/alerts", defender_token).status_code == 503
    assert api(clean_simulator, "/api/alerts", defender_token).status_code == 200


def test_delay_slows_the_answer_and_a_read_timeout_fires(clean_simulator, defender_token):
    clean_simulator.faults.set(delay=0.2)
    started = time.monotonic()
    assert api(clean_simulator, "/api/machines", defender_token).status_code == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"{clean_simulator.base_url}/api/machines", verify=clean_simulator.ca_path, timeout=(2, 0.1))


def test_malformed_json_on_page_k_of_a_paged_answer(clean_simulator, defender_token):
    clean_simulator.faults.set(malformed_page=2)
    first = api(clean_simulator, "/api/alerts", defender_token, **{"$top": "10"})
    first.json()
    second = requests.get(
        first.json()["@odata.nextLink"],
        headers={"Authorization": f"Bearer {defender_token}"},
        verify=clean_simulator.ca_path,
        timeout=5,
    )
    assert second.status_code == 200
    with pytest.raises(ValueError):
        second.json()


def test_malformed_json_on_the_next_n_answers(clean_simulator, defender_token):
    clean_simulator.faults.set(malformed_next=1)
    with pytest.raises(ValueError):
        api(clean_simulator, "/api/machines", defender_token).json()
    assert api(clean_simulator, "/api/machines", defender_token).json()["value"]


def test_missing_next_link_when_top_is_given(clean_simulator, defender_token):
    clean_simulator.faults.set(missing_next_link_with_top=True)
    assert "@odata.nextLink" not in api(clean_simulator, "/api/alerts", defender_token, **{"$top": "5"}).json()
    clean_simulator.page_size = 5
    assert "@odata.nextLink" in api(clean_simulator, "/api/alerts", defender_token).json()


def test_token_faults_reach_msal_only_when_aimed_at_the_token_endpoint(clean_simulator, msal_env):
    clean_simulator.faults.set(fail_next=1, fail_status=503)
    assert post_token(clean_simulator, scope=DEFENDER_SCOPE).status_code == 200
    clean_simulator.faults.set(fail_next=1, fail_status=503, applies_to="token")
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        msal_app(clean_simulator, clean_simulator.app).acquire_token_for_client(scopes=[DEFENDER_SCOPE])


def test_http_control_endpoint_sets_reads_and_clears_faults(clean_simulator, defender_token):
    control = f"{clean_simulator.base_url}/_simulator/faults"
    response = requests.post(control, json={"throttle_every": 1, "retry_after": 4}, verify=clean_simulator.ca_path)
    assert response.json()["throttle_every"] == 1
    throttled = api(clean_simulator, "/api/machines", defender_token)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "4"
    assert requests.post(control, json={"nonsense": 1}, verify=clean_simulator.ca_path).status_code == 400
    assert requests.delete(control, verify=clean_simulator.ca_path).json()["throttle_every"] == 0
    assert api(clean_simulator, "/api/machines", defender_token).status_code == 200
    counters = requests.get(f"{clean_simulator.base_url}/_simulator/counters", verify=clean_simulator.ca_path).json()
    assert counters["api_calls"] == 2


def test_hostile_alerts_change_the_named_fields_of_the_first_alerts_and_leave_the_rest(clean_simulator, defender_token):
    machine = "ws-fin-07.corp.contoso.com"
    path = f"/api/machines/{machine}/alerts"
    plain = api(clean_simulator, path, defender_token).json()["value"]
    control = f"{clean_simulator.base_url}/_simulator/faults"
    hostile = "title=object,computerDnsName=missing; relatedUser.userName=nul,evidence.0.sha1=nul; alert=number"
    assert requests.post(control, json={"hostile_alerts": hostile}, verify=clean_simulator.ca_path).ok
    served = api(clean_simulator, path, defender_token).json()["value"]
    assert served[0]["title"] == {"text": "an object where text belongs"} and "computerDnsName" not in served[0]
    assert {key: value for key, value in served[0].items() if key not in ("title", "computerDnsName")} == {
        key: value for key, value in plain[0].items() if key not in ("title", "computerDnsName")
    }
    assert served[1]["relatedUser"]["userName"] == "text with a NUL \x00 inside"
    assert served[1]["evidence"] == []  # a path the alert does not have is left alone
    assert served[2] == 42 and served[3:] == plain[3:]
    assert api(clean_simulator, path, defender_token).json()["value"][0]["title"] == served[0]["title"]
    refused = requests.post(control, json={"hostile_alerts": "title=poison"}, verify=clean_simulator.ca_path)
    assert refused.status_code == 400 and "kind one of object, list" in refused.json()["error"]["message"]


def test_hostile_alerts_on_one_machine_leave_the_other_machines_alerts_alone(clean_simulator, defender_token):
    clean_simulator.faults.set(hostile_alerts="title=null", hostile_alerts_on="ws-fin-07")
    everything = api(clean_simulator, "/api/alerts", defender_token).json()["value"]
    hostile = [alert for alert in everything if alert["title"] is None]
    assert [alert["computerDnsName"] for alert in hostile] == ["ws-fin-07.corp.contoso.com"]


def test_run_faults_from_the_constructor_come_back_after_clear(tmp_path):
    with Simulator(seed=3, ca_path=tmp_path / "ca.pem", throttle_every=1) as sim:
        access_token = token(sim)
        assert api(sim, "/api/machines", access_token).status_code == 429
        sim.faults.set(throttle_every=0)
        assert api(sim, "/api/machines", access_token).status_code == 200
        sim.faults.clear()
        assert api(sim, "/api/machines", access_token).status_code == 429


# Observability, TLS and network utilities


def test_request_log_records_client_port_and_user_agent_but_no_authorization(clean_simulator, defender_token):
    with requests.Session() as session:
        session.headers["User-Agent"] = "integrations-console-test/1.0"
        session.get(
            f"{clean_simulator.base_url}/api/machines",
            headers={"Authorization": f"Bearer {defender_token}"},
            verify=clean_simulator.ca_path,
            timeout=5,
        )
        post_token(clean_simulator, scope=DEFENDER_SCOPE)
    records = clean_simulator.requests
    call = next(r for r in records if r.path == "/api/machines")
    assert call.user_agent == "integrations-console-test/1.0" and call.client_host == "127.0.0.1"
    assert call.client_port > 0 and call.status == 200 and call.kind == "api"
    text = repr(records)
    assert defender_token not in text and clean_simulator.app.client_secret not in text
    clean_simulator.reset_counters()
    assert clean_simulator.requests == [] and clean_simulator.token_requests == 0


def test_parallel_clients_are_served_and_logged(clean_simulator, defender_token):
    def fetch(_):
        return api(clean_simulator, "/api/alerts", defender_token, **{"$top": "50"}).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(fetch, range(48)))
    assert statuses == [200] * 48
    assert clean_simulator.api_calls == 48 and len(clean_simulator.requests) == 48


def test_the_ca_is_written_to_ca_path_and_is_not_trusted_by_the_system_store(simulator):
    with open(simulator.ca_path) as handle:
        assert handle.read() == simulator.ca_pem
    assert simulator.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{simulator.base_url}/api/machines", verify=True, timeout=5)
    localhost = requests.get(f"https://localhost:{simulator.port}/api/machines", verify=simulator.ca_path, timeout=5)
    assert localhost.status_code == 401


def test_closed_port_refuses_connections():
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://127.0.0.1:{closed_port()}/", timeout=2)


def test_silent_listener_accepts_but_never_answers_so_the_tls_handshake_times_out():
    with silent_listener() as listener, pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"https://{listener.host}:{listener.port}/", timeout=(0.2, 0.2), verify=False)


# OData $filter reader


FIELDS = {"name": Field("name", "string"), "when": Field("when", "datetime"), "n": Field("n", "number")}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("name eq 'O''Brien'", True),
        ("(name EQ 'o''brien') AND n gt 2", True),
        ("not (n le 2) and when lt 2024-01-02T00:00:00Z", True),
        ("when ge 2024-01-02", False),
        ("n eq 1 or startswith(name,'o''b')", True),
        ("endswith(name, 'x') or contains(name,'bri')", True),
        ("name ne null", True),
    ],
)
def test_odata_filter_reads_quotes_datetimes_numbers_and_any_case(expression, expected):
    record = {"name": "O'Brien", "when": "2024-01-01T12:00:00.0000000Z", "n": 3}
    assert parse_filter(expression, FIELDS, "Thing")(record) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("colour eq 'red'", "colour"),
        ("name eq", "Syntax error"),
        ("name eq 'a' and", "Syntax error"),
        ("when ge '2024-01-01'", "incompatible types"),
        ("(name eq 'a'", "Syntax error"),
        ("startswith(n,'1')", "startswith"),
    ],
)
def test_odata_filter_errors_name_the_problem(expression, message):
    with pytest.raises(ODataError, match=message):
        parse_filter(expression, FIELDS, "Thing")


# As Microsoft documents: activity after creation, timestamps, IP lookup, tags, Graph's products and limits, SIEM rows


def test_alerts_are_updated_after_creation_and_some_stay_active_after_it(simulator):
    alerts = simulator.alerts
    assert all(parse(a["lastUpdateTime"]) > parse(a["alertCreationTime"]) for a in alerts)
    assert all(parse(a["firstEventTime"]) <= parse(a["alertCreationTime"]) for a in alerts)
    assert 0 < sum(parse(a["lastEventTime"]) > parse(a["alertCreationTime"]) for a in alerts) < len(alerts)
    assert all(parse(a["lastUpdateTime"]) >= parse(a["lastEventTime"]) for a in alerts)


def test_timestamps_carry_from_0_to_7_fractional_digits(simulator):
    times = [a[name] for a in simulator.alerts for name in ("alertCreationTime", "lastUpdateTime", "lastEventTime")]
    times += [m[name] for m in simulator.machines for name in ("firstSeen", "lastSeen")]
    digits = {len(time.rstrip("Z").partition(".")[2]) for time in times}
    assert {0, 7} <= digits and digits & {1, 2, 3} and digits <= set(range(8))
    assert all(time.endswith("Z") and parse(time) for time in times)


def test_machines_are_found_by_last_ip_and_by_ip_within_15_minutes_of_a_moment(simulator, defender_token):
    machine = simulator.data.machine_by_name("ws-fin-07.corp.contoso.com")
    address = machine["lastIpAddress"]
    listed = api(simulator, "/api/machines", defender_token, **{"$filter": f"lastIpAddress eq '{address}'"}).json()
    assert [m["id"] for m in listed["value"]] == [machine["id"]]
    seen = iso(machine["lastSeen"] + timedelta(minutes=10))
    found = api(simulator, f"/api/machines/findbyip(ip='{address}',timestamp={seen})", defender_token).json()
    assert [m["id"] for m in found["value"]] == [machine["id"]]
    later = iso(machine["lastSeen"] + timedelta(minutes=16))
    assert (
        api(simulator, f"/api/machines/findbyip(ip='{address}',timestamp={later})", defender_token).json()["value"]
        == []
    )
    old = iso(datetime.now(UTC) - timedelta(days=31))
    response = api(simulator, f"/api/machines/findbyip(ip='{address}',timestamp={old})", defender_token)
    assert response.status_code == 400


def test_machine_tags_are_filtered_with_any(simulator, defender_token):
    response = api(simulator, "/api/machines", defender_token, **{"$filter": "machineTags/any(tag: tag eq 'Finance')"})
    names = sorted(m["computerDnsName"] for m in response.json()["value"])
    assert names == ["ws-fin-07.corp.contoso.com", "ws-fin-071.corp.contoso.com"]
    upper = api(simulator, "/api/machines", defender_token, **{"$filter": "machineTags/any(t: t eq 'FINANCE')"})
    assert upper.json()["value"] == []
    wrong = api(simulator, "/api/machines", defender_token, **{"$filter": "machineTags eq 'Finance'"})
    assert wrong.status_code == 400


def test_text_filters_are_case_sensitive(simulator, defender_token):
    exact = api(simulator, "/api/alerts", defender_token, **{"$filter": "status eq 'New'"}).json()["value"]
    lower = api(simulator, "/api/alerts", defender_token, **{"$filter": "status eq 'new'"}).json()["value"]
    assert exact and lower == []


def test_graph_serves_email_alerts_beside_endpoint_alerts_and_narrows_by_service_source(simulator):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    every = api(simulator, "/v1.0/security/alerts_v2", graph_token).json()["value"]
    assert {a["serviceSource"] for a in every} == {"microsoftDefenderForEndpoint", "microsoftDefenderForOffice365"}
    emails = [a for a in every if a["serviceSource"] == "microsoftDefenderForOffice365"]
    assert emails and not any("deviceEvidence" in e["@odata.type"] for a in emails for e in a["evidence"])
    narrowed = api(
        simulator,
        "/v1.0/security/alerts_v2",
        graph_token,
        **{"$filter": "serviceSource eq 'microsoftDefenderForEndpoint'"},
    ).json()["value"]
    assert len(narrowed) == len(simulator.alerts) == len(every) - len(emails)


def test_graph_evidence_any_finds_the_alerts_of_one_device(simulator):
    graph_token = token(simulator, scope=GRAPH_SCOPE)
    for expression in [
        "evidence/any(e: e/deviceDnsName eq 'dc-01.corp.contoso.com')",
        "evidence/any(e: e/microsoft.graph.security.deviceEvidence/deviceDnsName eq 'dc-01.corp.contoso.com')",
    ]:
        found = api(simulator, "/v1.0/security/alerts_v2", graph_token, **{"$filter": expression}).json()["value"]
        expected = [a["id"] for a in simulator.alerts if a["computerDnsName"] == "dc-01.corp.contoso.com"]
        assert sorted(a["id"] for a in found) == sorted(expected) and expected


def test_graph_caps_top_at_1000_refuses_skip_beyond_500_and_pages_with_a_skiptoken(clean_simulator):
    graph_token = token(clean_simulator, scope=GRAPH_SCOPE)
    assert api(clean_simulator, "/v1.0/security/alerts_v2", graph_token, **{"$top": "5000"}).status_code == 200
    refused = api(clean_simulator, "/v1.0/security/alerts_v2", graph_token, **{"$skip": "501"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"
    body = api(clean_simulator, "/v1.0/security/alerts_v2", graph_token, **{"$top": "10"}).json()
    assert "$skiptoken=10" in body["@odata.nextLink"] and "$skip=" not in body["@odata.nextLink"]


def test_siem_sends_several_detections_per_alert_with_empty_text_not_null(simulator):
    siem_token = post_token(simulator, v1=True, resource=SIEM_RESOURCE).json()["access_token"]
    rows = siem_api(simulator, siem_token, ago="P31D").json()
    per_alert = {}
    for row in rows:
        per_alert.setdefault(row["AlertId"], []).append(row)
    assert max(len(detections) for detections in per_alert.values()) > 1
    assert len({row["FullId"] for row in rows}) == len(rows)
    assert "Status" not in rows[0] and "FirstEventTime" not in rows[0] and "LastEventTime" not in rows[0]
    assert all(value is not None for row in rows for name, value in row.items() if not name.startswith(("Rem", "Was")))
