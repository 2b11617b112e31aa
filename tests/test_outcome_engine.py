"""The outcome engine against the simulator over real HTTPS with real msal: the simulator is told which procedures
ran on an endpoint and how Defender responded; the engine asks for the actor's alerts (the integration is not
swept), matches them, and scores each procedure."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from defender.models import Execution, Procedure, SyncState
from defender.operations import outcomes, sync
from defender.operations.executions import record_procedures
from defender.simulator import Simulator
from tests.factories import make_actor, simulator_integration

pytestmark = pytest.mark.django_db

LSASS = r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Temp\lsass.dmp full"
ENCODED = "powershell.exe -NoProfile -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA="
SCAN = "nmap -sS 10.20.30.0/24"
NETCONFIG = r'cmd.exe /c "ipconfig /all > C:\Users\Public\net.txt"'


@pytest.fixture(scope="module")
def endpoint_simulator(tmp_path_factory):
    """A simulator of its own (the procedures change its data), with one machine that has no alert of its own."""
    with Simulator(seed=21, ca_path=tmp_path_factory.mktemp("outcomes") / "ca.pem") as sim:
        sim.endpoint = sim.seed_fleet(0, 1)[0]
        sim.ran_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        steps = [
            ("T1003.001", LSASS, "prevented"),
            ("T1059.001", ENCODED, "alerted"),
            ("T1046", SCAN, "missed"),
            ("T1016", NETCONFIG, "detected"),
        ]
        for index, (technique, command, response) in enumerate(steps):
            start = sim.ran_at + timedelta(minutes=2 * index)
            sim.procedure_ran(sim.endpoint, technique, command, start, start + timedelta(seconds=20), response)
        yield sim


def ran(sim, actor, *extra):
    procedures = [
        {
            "technique_id": technique,
            "name": name,
            "command": command,
            "order": index + 1,
            "started_at": sim.ran_at + timedelta(minutes=2 * index),
            "stopped_at": sim.ran_at + timedelta(minutes=2 * index, seconds=20),
        }
        for index, (technique, name, command) in enumerate(
            [
                ("T1003.001", "LSASS dump", LSASS),
                ("T1059.001", "Encoded PowerShell", ENCODED),
                ("T1046", "Network scan", SCAN),
                ("T1016", "Network configuration", NETCONFIG),
            ]
        )
    ]
    result = record_procedures(actor=actor, procedures=procedures + list(extra), source=Execution.Source.API)
    return result.execution


def by_technique(execution):
    return {procedure.technique_id: procedure for procedure in execution.procedures.prefetch_related("matches")}


def test_each_procedure_is_prevented_alerted_or_missed_as_defender_responded(endpoint_simulator):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint.split(".")[0])

    execution = ran(sim, actor)
    outcomes.evaluate_execution(execution)

    scored = by_technique(execution)
    assert {technique: p.outcome for technique, p in scored.items()} == {
        "T1003.001": "prevented",
        "T1059.001": "alerted",
        "T1046": "missed",
        "T1016": "detected",
    }
    prevented = scored["T1003.001"].matches.get()
    assert prevented.prevented and set(prevented.rules) == {"technique", "command"}
    assert prevented.alert.actor == actor
    assert "ran the procedure's command" in prevented.reason
    assert not scored["T1059.001"].matches.get().prevented
    assert "No alert matched before the window closed" in scored["T1046"].outcome_note
    assert "hunting found no process" in scored["T1046"].outcome_note
    assert [(check["name"], check["ok"], check["message"]) for check in scored["T1046"].checks] == [
        ("Defender EU", True, scored["T1046"].checks[0]["message"]),
        ("Defender EU", True, "hunting found no such process"),
    ]
    assert "recorded the procedure's process" in scored["T1016"].outcome_note
    assert scored["T1016"].matches.count() == 0


def test_a_procedure_whose_window_is_open_is_pending_until_it_closes(endpoint_simulator):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    now = datetime.now(UTC)
    execution = ran(
        sim,
        actor,
        {
            "technique_id": "T1082",
            "command": "systeminfo",
            "order": 9,
            "started_at": now - timedelta(minutes=1),
            "stopped_at": now,
        },
    )

    outcomes.evaluate_execution(execution)
    late = by_technique(execution)["T1082"]
    assert late.outcome == "pending"
    assert "the detection window is open" in late.outcome_note

    Procedure.objects.filter(pk=late.pk).update(window_closes_at=now - timedelta(seconds=1))
    assert outcomes.evaluate_pending() == 5  # the execution's procedures, evaluated again together

    late.refresh_from_db()
    assert late.outcome == "missed"
    assert not Procedure.objects.filter(evaluated_outcome="pending").exists()


def test_an_integration_that_cannot_be_asked_keeps_the_unalerted_procedures_pending_and_says_why(
    endpoint_simulator, closed_port
):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    simulator_integration(sim, name="Defender US", host="127.0.0.1", port=closed_port)
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)

    execution = ran(sim, actor)
    outcomes.evaluate_execution(execution)

    scored = by_technique(execution)
    assert scored["T1003.001"].outcome == "prevented"  # what one integration found still counts
    scan = scored["T1046"]
    assert scan.outcome == "pending"
    assert scan.outcome_note.startswith("could not ask Defender US: ")
    assert "stays Pending until every integration has answered" in scan.outcome_note
    assert [check["ok"] for check in scan.checks] == [True, False, True, False]  # alerts, then hunting


def test_an_override_is_shown_and_survives_the_next_evaluation(endpoint_simulator, admin_user):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    execution = ran(sim, actor)
    outcomes.evaluate_execution(execution)
    scan = by_technique(execution)["T1046"]

    scan.set_override("detected", "Seen in the SIEM's firewall logs", admin_user)
    scan.save()
    outcomes.evaluate_execution(execution)

    scan.refresh_from_db()
    assert (scan.outcome, scan.evaluated_outcome, scan.override_by) == ("detected", "missed", admin_user)


def test_the_command_prints_each_procedures_outcome_and_why(endpoint_simulator):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    execution = ran(sim, actor)
    out = StringIO()

    call_command("evaluate_outcomes", str(execution.pk), stdout=out)

    printed = out.getvalue()
    assert "T1003.001  Prevented LSASS dump" in printed
    assert "T1059.001  Alerted   Encoded PowerShell" in printed
    assert "T1046      Missed    Network scan" in printed
    assert "ran the procedure's command" in printed


def test_without_the_hunting_permission_the_note_says_what_to_grant(endpoint_simulator):
    sim = endpoint_simulator
    app = sim.app_without_hunting
    simulator_integration(sim, name="Defender EU", client_id=app.client_id, client_secret=app.client_secret)
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)

    execution = ran(sim, actor)
    outcomes.evaluate_execution(execution)

    scored = by_technique(execution)
    assert scored["T1003.001"].outcome == "prevented"
    scan, netconfig = scored["T1046"], scored["T1016"]
    assert (scan.outcome, netconfig.outcome) == ("missed", "missed")  # no alert, and Defender could not be asked
    assert "telemetry not checked: grant AdvancedQuery.Read.All to the app of Defender EU" in netconfig.outcome_note


def test_graph_integrations_hunt_with_run_hunting_query(endpoint_simulator):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender Graph", api_flavour="graph", resource="https://graph.microsoft.com")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    sim.reset_counters()

    execution = ran(sim, actor)
    outcomes.evaluate_execution(execution)

    assert by_technique(execution)["T1016"].outcome == "detected"
    assert any(r.path == "/v1.0/security/runHuntingQuery" and r.method == "POST" for r in sim.requests)


def test_evaluating_asks_the_database_as_often_with_six_swept_integrations_as_with_one(endpoint_simulator):
    """Each integration's sweep schedule and state come with it: no query per integration."""
    sim = endpoint_simulator
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    execution = ran(sim, actor)

    def swept(name):
        integration = simulator_integration(sim, name=name)
        sync.set_schedule(integration, 10)
        SyncState.objects.create(
            integration=integration, last_started_at=datetime.now(UTC), last_finished_at=datetime.now(UTC), last_ok=True
        )

    def queries():
        with CaptureQueriesContext(connection) as captured:
            outcomes.evaluate_execution(execution, ask_defender=False)
        return len(captured)

    swept("Defender EU")
    with_one = queries()
    for index in range(5):
        swept(f"Defender {index}")

    assert queries() == with_one
    assert {check["message"] for p in execution.procedures.all() for check in p.checks} == {"swept"}


def hunting_queries(sim):
    return sum(1 for record in sim.requests if record.path.endswith(("advancedqueries/run", "runHuntingQuery")))


def test_telemetry_is_asked_only_once_the_window_has_closed(endpoint_simulator):
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    execution = ran(sim, actor)
    execution.procedures.update(window_closes_at=datetime.now(UTC) + timedelta(hours=1))
    before = hunting_queries(sim)

    outcomes.evaluate_execution(execution)

    netconfig = by_technique(execution)["T1016"]  # recorded by Defender, no alert: an alert may still come
    assert netconfig.outcome == "pending" and "Telemetry is checked when it closes" in netconfig.outcome_note
    assert hunting_queries(sim) == before
    execution.procedures.update(window_closes_at=datetime.now(UTC) - timedelta(seconds=1))

    assert outcomes.evaluate_pending() == 4

    assert by_technique(execution)["T1016"].outcome == "detected"
    assert hunting_queries(sim) > before


def test_procedures_are_evaluated_again_until_evaluated_after_their_windows_closed(endpoint_simulator):
    """An Alerted procedure may yet turn out Prevented while Defender reports within its window."""
    sim = endpoint_simulator
    simulator_integration(sim, name="Defender EU")
    actor = make_actor(name="Fleet endpoint", hostname=sim.endpoint)
    execution = ran(sim, actor)
    execution.procedures.exclude(technique_id__in=["T1003.001", "T1059.001"]).delete()
    execution.procedures.update(window_closes_at=datetime.now(UTC) + timedelta(hours=1))
    outcomes.evaluate_execution(execution)
    assert {p.outcome for p in execution.procedures.all()} == {"prevented", "alerted"}  # none Pending

    assert outcomes.evaluate_pending() == 2  # windows open: asked again
    # A minute later, the windows have closed since that evaluation.
    now = datetime.now(UTC)
    execution.procedures.update(window_closes_at=now - timedelta(seconds=1), evaluated_at=now - timedelta(minutes=1))
    assert outcomes.evaluate_pending() == 2  # the first evaluation after they closed
    assert outcomes.evaluate_pending() == 0  # final
