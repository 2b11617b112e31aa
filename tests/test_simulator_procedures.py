"""The simulator told that an attack procedure ran: Defender's alert arrives after its delay, never before, and the
same can be asked over HTTP by a simulator in another process."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from defender.simulator import Simulator

DEFENDER = "https://api.securitycenter.microsoft.com"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with Simulator(seed=41, ca_path=tmp_path_factory.mktemp("procedures") / "ca.pem") as simulator:
        simulator.endpoint = simulator.seed_fleet(0, 1)[0]
        yield simulator


@pytest.fixture(scope="module")
def headers(sim):
    response = requests.post(
        f"{sim.auth_url}/{sim.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": sim.app.client_id,
              "client_secret": sim.app.client_secret, "scope": f"{DEFENDER}/.default"},
        verify=sim.ca_path, timeout=10,
    )  # fmt: skip
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def served_ids(sim, headers):
    answer = requests.get(
        f"{sim.base_url}/api/machines/{sim.endpoint}/alerts", headers=headers, verify=sim.ca_path, timeout=10
    )
    assert answer.status_code == 200
    return {alert["id"] for alert in answer.json()["value"]}


def test_an_alert_is_served_only_once_its_delay_has_passed(sim, headers):
    now = datetime.now(UTC)
    an_hour_late = sim.procedure_ran(
        sim.endpoint, "T1003.001", "rundll32.exe comsvcs.dll, MiniDump", now, now, "alerted", delay=timedelta(hours=1)
    )
    # Stopped nine seconds ago, reported ten seconds after it stopped: due about a second from now.
    soon = sim.procedure_ran(
        sim.endpoint, "T1059.001", "powershell.exe -nop -enc SQBFAFgA", now - timedelta(seconds=10),
        now - timedelta(seconds=9), "prevented", delay=timedelta(seconds=10),
    )  # fmt: skip

    assert an_hour_late not in served_ids(sim, headers)
    deadline = time.monotonic() + 30
    while soon not in served_ids(sim, headers) and time.monotonic() < deadline:
        time.sleep(0.2)
    served = served_ids(sim, headers)
    assert soon in served and an_hour_late not in served
    alert = requests.get(f"{sim.base_url}/api/alerts/{soon}", headers=headers, verify=sim.ca_path, timeout=10).json()
    assert alert["mitreTechniques"] == ["T1059.001"]
    assert datetime.fromisoformat(alert["alertCreationTime"]) >= now - timedelta(seconds=1)


def test_the_http_control_tells_the_simulator_a_procedure_ran(sim, headers):
    control = f"{sim.base_url}/_simulator/procedures"
    started = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    body = {"machine": sim.endpoint, "technique": "T1218.011", "command": "rundll32.exe javascript:alert(1)",
            "started": started, "response": "prevented", "delaySeconds": 60}  # fmt: skip

    answer = requests.post(control, json=body, verify=sim.ca_path, timeout=10)

    assert answer.status_code == 201
    alert_id = answer.json()["alertId"]
    assert alert_id in served_ids(sim, headers)  # an hour ago plus a minute: already reported
    alert = requests.get(f"{sim.base_url}/api/alerts/{alert_id}", headers=headers, verify=sim.ca_path, timeout=10)
    process = next(item for item in alert.json()["evidence"] if item["processCommandLine"] == body["command"])
    assert process["detectionStatus"] in ("Blocked", "Prevented")
    missed = requests.post(control, json=body | {"response": "missed"}, verify=sim.ca_path, timeout=10)
    assert missed.status_code == 201 and missed.json() == {"alertId": None}


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"machine": None}, 400, "missing field 'machine'"),
        ({"machine": "nowhere.corp.contoso.com"}, 404, "No machine"),
        ({"started": "2026-12-01T10:00:00"}, 400, "UTC offset"),
        ({"started": "yesterday"}, 400, "Invalid isoformat"),
        ({"response": "shrugged"}, 400, "prevented, alerted, detected or missed"),
        ({"delaySeconds": "soon"}, 400, "could not convert"),
    ],
)
def test_a_bad_procedure_control_body_is_refused_with_its_reason(sim, change, status, message):
    body = {"machine": sim.endpoint, "technique": "T1016", "command": "ipconfig", "started": "2026-12-01T10:00:00Z"}
    body = {key: value for key, value in (body | change).items() if value is not None}

    answer = requests.post(f"{sim.base_url}/_simulator/procedures", json=body, verify=sim.ca_path, timeout=10)

    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
