"""Microsoft's documented response shapes (tests/fixtures/microsoft/, written from Microsoft's samples and field
tables) against the normalisers, the error parsing and the simulator: a reference that is not a copy of the code
under test."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from defender.services import alerts
from defender.services.alerts import Evidence, Window, active_in
from defender.services.client import api_error_detail
from defender.services.untrusted import moment

FIXTURES = Path(__file__).parent / "fixtures" / "microsoft"
ALERT_ID = "da638512345678901234_-1234567890"
DEVICE_ID = "1111aaaa2222bbbb3333cccc4444dddd5555eeee"
PORTAL = "https://security.microsoft.com"
NAMES = ("ws-0001",)
# The window the fixtures are written around (see their README).
WINDOW = Window(datetime(2024, 5, 14, tzinfo=UTC), datetime(2024, 5, 15, tzinfo=UTC))
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.(\d+))?Z\Z")


def fixture(name):
    return json.loads((FIXTURES / name).read_text())


def mde(name="mde_alert_with_evidence.json"):
    return alerts.from_mde(fixture(name), "ws-0001.contoso.com", "ws-0001", PORTAL)


def graph(name="graph_alert_v2.json"):
    raw = fixture(name)
    reported, matched, device_id = alerts.graph_device(raw, NAMES)
    return alerts.from_graph(raw, reported, matched, device_id)


def siem():
    rows = fixture("siem_detections_of_one_alert.json")
    return alerts.from_siem(rows[0]["AlertId"], rows, "ws-0001.contoso.com", "ws-0001")


def strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


# --- the normalisers ----------------------------------------------------------------------------------------------


def test_every_timestamp_of_every_fixture_is_read_whatever_its_0_to_7_fractional_digits():
    times = [value for path in FIXTURES.glob("*.json") for value in strings(json.loads(path.read_text()))]
    times = [value for value in times if ISO_TIME.match(value)]
    assert all(moment(value) is not None for value in times)
    assert {len(ISO_TIME.match(value)[1] or "") for value in times} == set(range(8))


def test_an_mde_alert_asked_without_expand_has_no_evidence():
    assert mde("mde_alert.json").evidence == ()


def test_an_mde_alert_with_expand_keeps_every_entity_with_its_detection_status():
    evidence = mde().evidence
    assert [entry.entity_type for entry in evidence] == ["User", "Process", "File", "Process", "Ip", "Url"]
    assert [entry.detection_status for entry in evidence] == ["", "Blocked", "Prevented", "Detected", "", ""]


def test_mde_process_evidence_names_the_process_its_command_line_parent_file_and_hashes():
    assert mde().evidence[1] == Evidence(
        entity_type="Process",
        process_name="mimikatz.exe",
        command_line='C:\\BAS\\payloads\\mimikatz.exe "privilege::debug" "sekurlsa::logonpasswords" exit',
        parent_process="powershell.exe",
        file_name="mimikatz.exe",
        file_path="C:\\BAS\\payloads",
        sha1="aaaabbbbccccddddeeeeffff0000111122223333",
        sha256="aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999",
        detection_status="Blocked",
    )


def test_mde_user_ip_and_url_evidence_name_the_user_the_address_and_the_url():
    user, *_, address, url = mde().evidence
    assert (user.user, address.ip_address, url.url) == (
        "CONTOSO\\bas.runner",
        "203.0.113.10",
        "http://payloads.example.com/stage2",
    )


def test_an_mde_alert_keeps_its_incident_device_threat_detector_verdict_owner_and_times():
    alert = mde()
    assert (alert.incident_id, alert.incident_url) == ("4242", f"{PORTAL}/incidents/4242")
    assert (alert.device_id, alert.threat_family, alert.threat_name) == (
        DEVICE_ID,
        "Mimikatz",
        "HackTool:Win32/Mimikatz",
    )
    assert (alert.detector_id, alert.classification, alert.determination) == (
        "00000000-0000-0000-0000-0000000000d1",
        "InformationalExpectedActivity",
        "SecurityTesting",
    )
    assert (alert.assigned_to, alert.detection_source, alert.service_source) == (
        "secops@contoso.com",
        "antivirus",
        "microsoftDefenderForEndpoint",
    )
    assert alert.last_update == datetime(2024, 5, 14, 10, 30, 5, 500000, tzinfo=UTC)
    assert alert.resolved == datetime(2024, 5, 14, 10, 30, 5, 496666, tzinfo=UTC)
    assert alert.raw == fixture("mde_alert_with_evidence.json")


def test_an_alert_created_before_the_window_and_active_inside_it_is_kept():
    alert = mde("mde_alert.json")
    assert alert.created < WINDOW.since and active_in(alert, WINDOW)
    assert not active_in(alert, Window(WINDOW.since + timedelta(hours=10), WINDOW.until))


def test_null_and_the_text_null_are_empty():
    assert (mde("mde_alert.json").classification, mde("mde_alert.json").assigned_to) == ("", "")
    raw = {**fixture("mde_alert.json"), "assignedTo": "null", "threatFamilyName": "null"}
    alert = alerts.from_mde(raw, "ws-0001.contoso.com", "ws-0001", PORTAL)
    assert (alert.assigned_to, alert.threat_family) == ("", "")


def test_the_graph_alert_is_the_mde_alert_in_the_same_spellings():
    names = ["id", "severity", "status", "classification", "determination", "detection_source", "incident_id"]
    names += ["device_id", "threat_family", "threat_name", "detector_id", "assigned_to", "created", "first_event"]
    names += ["last_event", "last_update", "resolved", "service_source", "mitre_techniques"]
    assert {name: getattr(graph(), name) for name in names} == {name: getattr(mde(), name) for name in names}


def test_graph_evidence_keeps_the_device_process_file_user_and_ip_with_their_statuses():
    evidence = graph().evidence
    assert [entry.entity_type for entry in evidence] == ["Device", "Process", "File", "User", "Ip"]
    assert [(entry.detection_status, entry.remediation_status) for entry in evidence] == [
        ("", "None"),
        ("Blocked", "Blocked"),
        ("Prevented", "Prevented"),
        ("", "None"),
        ("", "None"),
    ]


def test_graph_process_evidence_reads_its_image_file_parent_and_user():
    process = graph().evidence[1]
    assert (process.process_name, process.parent_process, process.user) == (
        "mimikatz.exe",
        "powershell.exe",
        "CONTOSO\\bas.runner",
    )
    assert process.sha256 == mde().evidence[1].sha256 and process.command_line == mde().evidence[1].command_line


def test_graph_alert_links_to_its_incident_and_names_its_product():
    alert = graph()
    assert alert.incident_url.startswith(f"{PORTAL}/incidents/4242?tid=")
    assert alert.product_name == "Microsoft Defender for Endpoint"


def test_an_mdo_email_alert_names_no_machine_so_it_is_not_on_other_machines():
    assert alerts.graph_device(fixture("graph_alert_v2_mdo.json"), NAMES) == ("", None, "")


def test_a_graph_page_of_two_products_has_one_alert_on_the_device_and_one_on_no_machine():
    page = fixture("graph_alerts_page.json")["value"]
    assert [alerts.graph_device(raw, NAMES)[1] for raw in page] == ["ws-0001", None]


def test_siem_detections_of_one_alert_are_one_alert_with_every_detection_as_evidence():
    alert = siem()
    assert alert.id == ALERT_ID and len(alert.evidence) == 3
    assert [entry.entity_type for entry in alert.evidence] == ["Process", "Process", "Process"]
    assert [entry.remediation_status for entry in alert.evidence] == ["quarantine (succeeded)", "block (succeeded)", ""]
    assert [entry.was_executing for entry in alert.evidence] == [False, True, None]
    assert alert.evidence[0].md5 == "aaaabbbbccccddddeeeeffff00001111"
    assert alert.raw == {"detections": fixture("siem_detections_of_one_alert.json")}


def test_siem_alert_uses_what_the_exporter_sends_and_invents_no_status_or_event_times():
    alert = siem()
    assert (alert.status, alert.first_event, alert.last_event) == ("Unknown", None, None)
    assert alert.last_update == datetime(2024, 5, 14, 9, 13, 2, tzinfo=UTC)
    assert (alert.device_id, alert.threat_name, alert.threat_family) == (
        DEVICE_ID,
        "HackTool:Win32/Mimikatz",
        "Mimikatz",
    )
    assert alert.incident_url == f"{PORTAL}/incidents/byalert?alertId={ALERT_ID}&source=SIEM"


def test_the_three_flavours_agree_on_the_detection_source_device_and_threat():
    seen = [(a.id, a.detection_source, a.device_id, a.threat_name, a.detector_id) for a in (mde(), graph(), siem())]
    assert len(set(seen)) == 1


def test_an_alert_travels_as_plain_fields_and_comes_back_equal():
    for alert in (mde(), graph(), siem()):
        assert alerts.alert_from_fields(json.loads(json.dumps(alerts.alert_to_fields(alert)))) == alert


# --- error parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("mde_odata_error_400.json", "ODataError: Invalid OData URI query: property 'computerDnsName' is not"),
        ("graph_error_400.json", "BadRequest"),
        ("graph_error_429.json", "TooManyRequests: Please retry again later."),
        ("hunting_error_400.json", "BadRequest: "),
    ],
)
def test_an_api_error_body_is_read_as_its_code_and_message(name, detail):
    assert api_error_detail(SimpleNamespace(content=(FIXTURES / name).read_bytes())).startswith(detail)


def test_an_entra_429_without_a_json_body_gives_no_api_error_detail():
    assert api_error_detail(SimpleNamespace(content=fixture("entra_429.json")["body"].encode())) == ""


# --- the simulator's answers against the documented shapes --------------------------------------------------------


def get(simulator, path, access_token, base_url=None, **params):
    headers = {"Authorization": f"Bearer {access_token}"}
    url = (base_url or simulator.base_url) + path
    return requests.get(url, params=params, headers=headers, verify=simulator.ca_path, timeout=5)


def token(simulator, **form):
    form = {"scope": "https://api.securitycenter.microsoft.com/.default", **form}
    return post_token(simulator, **form).json()["access_token"]


def post_token(simulator, v1=False, **form):
    endpoint = "oauth2/token" if v1 else "oauth2/v2.0/token"
    body = {
        "grant_type": "client_credentials",
        "client_id": simulator.app.client_id,
        "client_secret": simulator.app.client_secret,
        **form,
    }
    url = f"{simulator.auth_url}/{simulator.tenant_id}/{endpoint}"
    return requests.post(url, data=body, verify=simulator.ca_path, timeout=5)


def keys(value):
    return set(value) - {"@odata.context"}


@pytest.fixture(scope="module")
def tokens(simulator):
    return {
        "mde": token(simulator),
        "graph": token(simulator, scope="https://graph.microsoft.com/.default"),
        "siem": post_token(simulator, v1=True, resource="https://graph.windows.net").json()["access_token"],
    }


def test_the_simulators_machine_has_every_documented_property(simulator, tokens):
    machine = get(simulator, f"/api/machines/{simulator.machines[0]['id']}", tokens["mde"]).json()
    assert keys(fixture("mde_machine.json")) <= keys(machine)


def test_the_simulators_machines_by_ip_are_a_list_of_machines(simulator, tokens):
    machine = simulator.machines[0]
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    seen = datetime.fromisoformat(machine["lastSeen"])
    at = seen.strftime("%Y-%m-%dT%H:%M:%SZ") if seen < datetime.now(UTC) - timedelta(minutes=10) else at
    body = get(simulator, f"/api/machines/findbyip(ip='{machine['lastIpAddress']}',timestamp={at})", tokens["mde"])
    documented = fixture("mde_machines_by_ip.json")
    assert body.json()["@odata.context"].endswith(documented["@odata.context"].rsplit("/", 1)[1])
    assert all(keys(documented["value"][0]) <= keys(item) for item in body.json()["value"]) and body.json()["value"]


def test_the_simulators_mde_alert_has_the_documented_properties_and_evidence_with_expand_only(simulator, tokens):
    plain = get(simulator, "/api/alerts", tokens["mde"], **{"$top": "1"}).json()["value"][0]
    expanded = get(simulator, "/api/alerts", tokens["mde"], **{"$top": "50", "$expand": "evidence"}).json()["value"]
    assert keys(fixture("mde_alert.json")) <= keys(plain) and plain["evidence"] == []
    documented = fixture("mde_alert_with_evidence.json")["evidence"][0]
    assert all(list(item) == list(documented) for alert in expanded for item in alert["evidence"])


def test_the_simulators_mde_alert_page_is_an_odata_collection(simulator, tokens):
    page = get(simulator, "/api/alerts", tokens["mde"], **{"$top": "2"}).json()
    assert set(page) == set(fixture("mde_alerts_page.json")) and len(page["value"]) == 2


def test_the_simulators_graph_alerts_have_the_documented_properties_and_evidence(simulator, tokens):
    page = get(simulator, "/v1.0/security/alerts_v2", tokens["graph"], **{"$top": "1000"}).json()
    assert set(fixture("graph_alerts_page.json")) - {"@odata.nextLink"} <= set(page)
    by_source = {alert["serviceSource"]: alert for alert in page["value"]}
    for name, source in [("graph_alert_v2.json", "microsoftDefenderForEndpoint"), ("graph_alert_v2_mdo.json", "")]:
        documented = fixture(name)
        served = by_source[documented["serviceSource"]] if not source else by_source[source]
        assert keys(documented) <= keys(served)
        served_types = {item["@odata.type"]: item for alert in page["value"] for item in alert["evidence"]}
        for item in documented["evidence"]:
            assert set(item) <= set(served_types[item["@odata.type"]]), item["@odata.type"]


def test_the_simulators_siem_detections_have_the_documented_fields_in_order(simulator, tokens):
    rows = get(simulator, "/api/alerts", tokens["siem"], simulator.siem_base_url, ago="P31D").json()
    documented = list(fixture("siem_detections_of_one_alert.json")[0])
    assert all(list(row) == documented for row in rows)
    assert all(row[name] is not None for row in rows for name in documented if name not in ("RemediationIsSuccess",
               "WasExecutingWhileDetected"))  # fmt: skip


def test_the_simulators_errors_have_the_documented_shapes(clean_simulator):
    access = token(clean_simulator)
    graph_token = token(clean_simulator, scope="https://graph.microsoft.com/.default")
    mde_error = get(clean_simulator, "/api/alerts", access, **{"$filter": "computerDnsName eq 'x'"}).json()
    assert set(mde_error["error"]) == set(fixture("mde_odata_error_400.json")["error"])
    graph_error = get(clean_simulator, "/v1.0/security/alerts_v2", graph_token, **{"$filter": "title eq 'x'"}).json()
    assert set(graph_error["error"]) == set(fixture("graph_error_400.json")["error"])
    assert set(graph_error["error"]["innerError"]) == set(fixture("graph_error_400.json")["error"]["innerError"])
    clean_simulator.faults.set(throttle_every=1, retry_after=10)
    throttled = get(clean_simulator, "/v1.0/security/alerts_v2", graph_token)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "10"
    assert json.dumps(_shape(throttled.json())) == json.dumps(_shape(fixture("graph_error_429.json")))


def _shape(value):
    return {name: _shape(item) for name, item in sorted(value.items())} if isinstance(value, dict) else None


def test_the_simulators_entra_answers_have_the_documented_shapes(simulator):
    assert set(post_token(simulator, scope="https://graph.microsoft.com/.default").json()) == set(
        fixture("entra_token_v2.json")
    )
    assert set(post_token(simulator, v1=True, resource="https://graph.windows.net").json()) == set(
        fixture("entra_token_v1.json")
    )
    refused = post_token(simulator, scope="https://graph.microsoft.com/.default", client_secret="wrong")
    assert set(refused.json()) == set(fixture("entra_aadsts_error.json"))


def test_the_simulators_entra_429_is_the_documented_one_without_a_body(clean_simulator):
    clean_simulator.faults.set(throttle_every=1, applies_to="token", retry_after=60)
    answer = post_token(clean_simulator, scope="https://graph.microsoft.com/.default")
    documented = fixture("entra_429.json")
    assert (answer.status_code, answer.text) == (documented["status"], documented["body"])
    assert answer.headers["Retry-After"] == documented["headers"]["Retry-After"]
