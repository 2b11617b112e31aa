"""ATTiRe logs in the format Invoke-AtomicRedTeam's Attire-ExecutionLogger writes become executions of an actor:
every procedure or none, the same execution ID once, an unknown target named, and each bad field named with its
procedure."""

import copy
import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from defender.models import Actor, Execution, Procedure
from defender.operations.executions import ExecutionRejected, import_attire, record_procedures, resolve_actor
from tests.factories import make_actor, make_integration

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("evaluation_left_to_a_worker")]

LOG_FILE = Path(__file__).parent / "fixtures" / "attire" / "finance-workstation.json"


@pytest.fixture
def log():
    return json.loads(LOG_FILE.read_text())


@pytest.fixture
def actor():
    return make_actor(name="Finance workstation", hostname="ws-fin-07.corp.example")


def test_a_log_of_the_logger_becomes_an_execution_of_its_target_with_procedures_in_order(actor, log):
    result = import_attire(LOG_FILE.read_bytes())

    assert result.created
    execution = result.execution
    assert execution.actor == actor  # WS-FIN-07 is the short name of the actor's FQDN, in another case
    assert execution.external_id == log["execution-data"]["execution-id"]
    assert execution.execution_source == "Invoke-Atomicredteam"
    assert (execution.target_host, execution.target_ip, execution.target_user) == (
        "WS-FIN-07",
        "10.20.30.47",
        "CONTOSO\\tester",
    )
    assert execution.time_generated == datetime(2026, 11, 30, 9, 12, 41, tzinfo=UTC)
    first, second = execution.procedures.order_by("order")
    assert (first.order, first.technique_id, first.name) == (2, "T1003.001", "Dump LSASS.exe Memory using comsvcs.dll")
    assert first.procedure_id == "2536dee2-12fb-459a-8c37-971844fa73be"
    assert first.executor == "powershell"
    assert "comsvcs.dll, MiniDump" in first.command
    assert first.started_at == datetime(2026, 11, 30, 9, 10, 2, tzinfo=UTC)
    assert first.stopped_at == datetime(2026, 11, 30, 9, 10, 9, tzinfo=UTC)
    assert first.outcome == "pending"
    assert second.output == "[STDERR] Access is denied."
    assert "Imported execution" in result.summary and "2 procedures" in result.summary


def test_the_same_execution_id_imported_twice_is_one_execution(actor):
    import_attire(LOG_FILE.read_bytes())
    again = import_attire(LOG_FILE.read_bytes())

    assert not again.created
    assert Execution.objects.count() == 1
    assert Procedure.objects.count() == 2
    assert "imported before" in again.summary


def test_a_bad_procedure_stores_nothing_and_the_message_names_the_field_and_the_procedure(actor, log):
    log["procedures"][1]["steps"][0]["time-start"] = "yesterday"

    with pytest.raises(ExecutionRejected) as rejected:
        import_attire(log)

    message = str(rejected.value)
    assert "procedures[1] (T1059.001 'Mimikatz - Cradlecraft PsSendKeys')" in message
    assert "steps[0].time-start" in message and "'yesterday' is not a time" in message
    assert rejected.value.field == "steps[0].time-start"
    assert Execution.objects.count() == 0 and Procedure.objects.count() == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda log: log["procedures"][0].update({"mitre-technique-id": "T13"}), "'T13' is not an ATT&CK technique"),
        (lambda log: log["procedures"][0].pop("mitre-technique-id"), "procedures[0]: mitre-technique-id is required"),
        (lambda log: log["procedures"][0].update({"steps": []}), "steps must list at least one step"),
        (lambda log: log["procedures"][0]["procedure-id"].update({"id": "not-a-guid"}), "is not a GUID"),
        (lambda log: log["procedures"][0]["steps"][0].update({"time-stop": "2026-11-30T09:00:00Z"}), "before its"),
        (lambda log: log["procedures"][0].update({"order": "second"}), "order must be a whole number"),
        (lambda log: log.update({"attire-version": "2.0"}), "attire-version '2.0' is not supported"),
        (lambda log: log.pop("attire-version"), "does not look like an ATTiRe log"),
        (lambda log: log["execution-data"].pop("execution-id"), "execution-data.execution-id is required"),
        (lambda log: log.update({"procedures": []}), "procedures is empty"),
        (lambda log: log.update({"procedures": "none"}), "procedures must be a list"),
    ],
)
def test_each_bad_field_gets_a_message_naming_it(actor, log, change, expected):
    change(log)

    with pytest.raises(ExecutionRejected) as rejected:
        import_attire(log)

    assert expected in str(rejected.value)
    assert Execution.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{not json", "The file is not JSON"),
        (b"[1, 2]", "An ATTiRe log is a JSON object"),
        (b"\xff\xfe\x00", "not UTF-8 or UTF-16"),
    ],
)
def test_a_file_that_is_no_log_is_refused_with_what_it_is(actor, data, expected):
    with pytest.raises(ExecutionRejected, match=expected):
        import_attire(data)


def test_a_log_written_with_a_byte_order_mark_imports(actor):
    assert import_attire(b"\xef\xbb\xbf" + LOG_FILE.read_bytes()).created


def test_an_unknown_target_is_named_and_nothing_is_stored(log):
    make_actor(name="Other", hostname="ws-hr-01")

    with pytest.raises(ExecutionRejected) as rejected:
        import_attire(log)

    assert "No actor is the target host 'WS-FIN-07' and IP 10.20.30.47" in str(rejected.value)
    assert rejected.value.unknown_target == "WS-FIN-07"
    assert Execution.objects.count() == 0


def test_creating_actors_adds_the_unknown_target(log):
    result = import_attire(log, create_actors=True)

    actor = result.execution.actor
    assert (actor.name, actor.hostname, actor.ip_address) == ("WS-FIN-07", "WS-FIN-07", "10.20.30.47")
    assert Actor.objects.count() == 1


@pytest.mark.parametrize(
    ("fields", "host", "ip"),
    [
        ({"hostname": "ws-fin-07"}, "ws-fin-07.corp.example", ""),
        ({"hostname": "ws-fin-07.corp.example"}, "WS-FIN-07", ""),
        ({"hostname": "old-name", "alternate_hostname": "ws-fin-07"}, "ws-fin-07", ""),
        ({"hostname": "renamed", "ip_address": "10.20.30.47"}, "unknown-host", "10.20.30.47"),
    ],
)
def test_the_target_resolves_by_hostname_alternate_short_name_or_ip(fields, host, ip):
    actor = make_actor(name="Target", **fields)
    make_actor(name="Bystander", hostname="ws-fin-070")

    assert resolve_actor(host, ip) == actor


def test_two_fqdns_with_one_short_name_are_different_hosts():
    make_actor(name="Target", hostname="ws-fin-07.corp.example")

    assert resolve_actor("ws-fin-07.other.example", "") is None


def test_the_window_closes_after_the_imports_own_window_or_the_integrations_largest(actor, log):
    make_integration(name="A", detection_window_minutes=30)
    make_integration(name="B", detection_window_minutes=90)
    make_integration(name="Off", detection_window_minutes=600, enabled=False)

    by_default = import_attire(log).execution
    other = copy.deepcopy(log)
    other["execution-data"]["execution-id"] = "another-run"
    own = import_attire(other, detection_window_minutes=15).execution

    first = by_default.procedures.order_by("order").first()
    assert first.window_closes_at == first.stopped_at + timedelta(minutes=90)
    first = own.procedures.order_by("order").first()
    assert first.window_closes_at == first.stopped_at + timedelta(minutes=15)


def test_a_detection_window_outside_a_minute_to_a_week_is_refused(actor, log):
    with pytest.raises(ExecutionRejected, match="between 1 minute and 7 days"):
        import_attire(log, detection_window_minutes=0)


def test_procedures_recorded_by_hand_are_a_manual_execution(actor):
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    result = record_procedures(
        actor=actor,
        source=Execution.Source.MANUAL,
        procedures=[
            {
                "technique_id": "T1059.001",
                "name": "PowerShell",
                "command": "powershell -enc AAAA",
                "started_at": start,
                "stopped_at": start + timedelta(seconds=30),
            },
        ],
    )

    procedure = result.execution.procedures.get()
    assert result.execution.source == "manual"
    assert (procedure.technique_id, procedure.command) == ("T1059.001", "powershell -enc AAAA")
    assert procedure.window_closes_at == procedure.stopped_at + timedelta(minutes=60)


def test_a_recorded_procedure_with_a_bad_technique_names_it(actor):
    start = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ExecutionRejected, match=r"procedures\[0\].technique_id: Enter a MITRE ATT&CK technique ID"):
        record_procedures(
            actor=actor,
            source=Execution.Source.API,
            procedures=[{"technique_id": "t1059", "started_at": start, "stopped_at": start}],
        )


def test_the_command_imports_each_file_and_reports_the_one_that_failed(actor, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2 files could not be imported"):
        call_command("import_attire", str(LOG_FILE), str(bad), "--detection-window", "30", stdout=out)

    printed = out.getvalue()
    assert "Imported execution" in printed and "bad.json: attire-version is required" in printed
    assert Execution.objects.get().detection_window_minutes == 30


def test_the_command_creates_actors_when_asked(tmp_path, log):
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))

    call_command("import_attire", str(path), "--create-actors", stdout=StringIO())

    assert Actor.objects.get().hostname == "WS-FIN-07"
