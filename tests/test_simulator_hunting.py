"""The simulator's advanced hunting: the KQL subset the site sends, evaluated as Kusto does, over real HTTPS; what it
cannot run refused with Microsoft's 400; a token without the permission refused with the 403."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from defender.services import hunting
from defender.simulator import Simulator
from defender.simulator.hunting import QueryError, evaluate

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ROWS = [
    {"Timestamp": T0, "DeviceName": "ws-fin-07.corp.contoso.com", "FileName": "rundll32.exe",
     "ProcessCommandLine": r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 lsass.dmp full"},
    {"Timestamp": T0 + timedelta(hours=1), "DeviceName": "WS-HR-02.corp.contoso.com", "FileName": "cmd.exe",
     "ProcessCommandLine": "cmd.exe /c ipconfig /all"},
]  # fmt: skip


def ids(query):
    return [row["FileName"] for row in evaluate("DeviceProcessEvents | " + query + " | project FileName", ROWS)[1]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('where FileName == "cmd.exe"', ["cmd.exe"]),
        ('where FileName == "CMD.EXE"', []),
        ('where FileName =~ "CMD.EXE"', ["cmd.exe"]),
        ('where FileName != "cmd.exe"', ["rundll32.exe"]),
        ('where ProcessCommandLine has "minidump"', ["rundll32.exe"]),
        ('where ProcessCommandLine has "mini"', []),  # has: whole terms only
        ('where ProcessCommandLine contains "mini"', ["rundll32.exe"]),
        ('where DeviceName startswith "WS-FIN-07."', ["rundll32.exe"]),
        ('where DeviceName in~ ("ws-hr-02.corp.contoso.com", "other")', ["cmd.exe"]),
        (
            "where Timestamp between (datetime(2026-12-01T10:00:00Z) .. datetime(2026-12-01T10:00:00Z))",
            ["rundll32.exe"],
        ),
        ('where FileName == "cmd.exe" or FileName == "rundll32.exe" and ProcessCommandLine has "nothing"', ["cmd.exe"]),
        (
            'where (FileName == "cmd.exe" or FileName == "rundll32.exe") and ProcessCommandLine has "ipconfig"',
            ["cmd.exe"],
        ),
        ("order by Timestamp desc | take 1", ["cmd.exe"]),
        ("order by Timestamp asc | limit 1", ["rundll32.exe"]),
    ],
)
def test_each_operator_behaves_as_kusto_does(query, expected):
    assert ids(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "DeviceEvents | take 1",
        "DeviceProcessEvents | summarize count()",
        'DeviceProcessEvents | where FileName matches regex ".*"',
        "DeviceProcessEvents | where Nope == 1",
        'DeviceProcessEvents | where FileName == "unterminated',
        "",
    ],
)
def test_what_the_subset_lacks_is_refused(query):
    with pytest.raises(QueryError):
        evaluate(query, ROWS)


def test_a_command_with_quotes_and_backslashes_cannot_break_out_of_its_string():
    hostile = 'x" or FileName == "cmd.exe'
    text = hunting.query(["ws-fin-07"], T0, T0 + timedelta(hours=2), hostile) + "\n"
    injected = "DeviceProcessEvents | where ProcessCommandLine has " + hunting.kql_string(hostile)

    assert evaluate(injected, ROWS)[1] == []
    assert hunting.kql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert evaluate(text, ROWS)[1] == []  # the site's own query: a valid one, that finds nothing here


@pytest.fixture(scope="module")
def hunting_simulator(tmp_path_factory):
    with Simulator(seed=31, ca_path=tmp_path_factory.mktemp("hunting") / "ca.pem") as sim:
        sim.endpoint = sim.seed_fleet(0, 1)[0]
        sim.procedure_ran(sim.endpoint, "T1016", "ipconfig /all", T0, T0 + timedelta(seconds=5), "detected")
        yield sim


def token(sim, app, resource):
    response = requests.post(
        f"{sim.auth_url}/{sim.tenant_id}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret,
              "scope": f"{resource}/.default"},
        verify=sim.ca_path, timeout=10,
    )  # fmt: skip
    return response.json()["access_token"]


QUERY = 'DeviceProcessEvents | where ProcessCommandLine has "ipconfig" | project DeviceName, ProcessCommandLine'


@pytest.mark.parametrize(
    ("path", "resource", "rows_key", "schema_key"),
    [
        ("/api/advancedqueries/run", "https://api.securitycenter.microsoft.com", "Results", "Schema"),
        ("/v1.0/security/runHuntingQuery", "https://graph.microsoft.com", "results", "schema"),
    ],
)
def test_both_hunting_endpoints_answer_in_their_own_shape(hunting_simulator, path, resource, rows_key, schema_key):
    sim = hunting_simulator
    headers = {"Authorization": f"Bearer {token(sim, sim.app, resource)}"}

    answer = requests.post(sim.base_url + path, json={"Query": QUERY}, headers=headers, verify=sim.ca_path, timeout=10)

    assert answer.status_code == 200
    body = answer.json()
    assert body[rows_key] == [{"DeviceName": sim.endpoint.lower(), "ProcessCommandLine": "ipconfig /all"}]
    assert [column.get("Name") or column.get("name") for column in body[schema_key]] == [
        "DeviceName",
        "ProcessCommandLine",
    ]
    refused = requests.post(
        sim.base_url + path, json={"Query": "DeviceProcessEvents | summarize"}, headers=headers, verify=sim.ca_path,
        timeout=10,
    )  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    ("path", "resource", "role"),
    [
        ("/api/advancedqueries/run", "https://api.securitycenter.microsoft.com", "AdvancedQuery.Read.All"),
        ("/v1.0/security/runHuntingQuery", "https://graph.microsoft.com", "ThreatHunting.Read.All"),
    ],
)
def test_a_token_without_the_hunting_role_is_refused(hunting_simulator, path, resource, role):
    sim = hunting_simulator
    headers = {"Authorization": f"Bearer {token(sim, sim.app_without_hunting, resource)}"}

    answer = requests.post(sim.base_url + path, json={"Query": QUERY}, headers=headers, verify=sim.ca_path, timeout=10)

    assert answer.status_code == 403
    assert role in answer.json()["error"]["message"]
