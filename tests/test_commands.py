"""defender_test and defender_alerts: output shapes, exit codes and what they record, against the simulator (and,
for a Remote integration, a real agent)."""

import csv
import io
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from defender.models import Alert, AlertFetch, Integration, Job, RemoteNode, TestRun
from defender.services.connectivity import STEP_NAMES
from defender.services.process import PROCESS
from tests.factories import make_actor, simulator_integration
from tests.remote_helpers import make_node_with_token_file, remote_integration_for, start_agent, stop, wait_until

STEP_KEYS = {"name", "outcome", "duration_ms", "message"}
ALERT_KEYS = {"id", "title", "severity", "status", "created", "machine", "mitre_techniques"}


@pytest.fixture(autouse=True)
def fresh_credentials():
    PROCESS.clear()


@pytest.fixture
def integration(db, simulator):
    return simulator_integration(simulator, read_timeout=30.0, max_retries=3)


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def _month_ago():
    return (datetime.now(UTC) - timedelta(days=31)).isoformat()


def test_defender_test_json_reports_every_step_and_records_the_outcome(integration):
    out, _ = _run("defender_test", "Simulator", "--json")
    payload = json.loads(out)
    assert payload["ok"] is True
    assert len(payload["steps"]) == 6
    assert all(set(step) == STEP_KEYS for step in payload["steps"])
    assert {step["outcome"] for step in payload["steps"]} == {"passed"}
    integration.refresh_from_db()
    assert integration.last_test_ok is True
    assert integration.last_test_at is not None
    assert integration.last_test_summary.startswith("All steps passed")


def test_defender_test_prints_a_line_per_step(integration):
    out, _ = _run("defender_test", "Simulator")
    lines = out.strip().splitlines()
    assert len(lines) == 6
    assert lines[0].startswith("✓ DNS lookup (")
    assert lines[5].startswith("✓ API call (")


def test_defender_test_exits_1_when_a_step_fails_and_records_it(integration, simulator):
    integration.client_secret = simulator.app.secret_id
    integration.save()
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("defender_test", "Simulator", "--json", stdout=out)
    assert failure.value.returncode == 1
    payload = json.loads(out.getvalue())
    assert payload["ok"] is False
    assert [step["outcome"] for step in payload["steps"]] == ["passed"] * 3 + ["failed", "skipped", "skipped"]
    integration.refresh_from_db()
    assert integration.last_test_ok is False
    assert integration.last_test_summary.startswith("Token failed:")


def test_unknown_integration_name_lists_the_known_ones(integration):
    with pytest.raises(CommandError) as failure:
        call_command("defender_test", "Nope")
    assert "No integration is named 'Nope'. Known integrations: Simulator." in str(failure.value)


def test_defender_alerts_json_for_an_actor_by_name_uses_its_alternate_hostname(integration, simulator):
    hostname, alternate = next(pair for pair in simulator.actor_hostnames() if pair[1])
    make_actor(name="Lobby kiosk", hostname=hostname, alternate_hostname=alternate)
    out, err = _run("defender_alerts", "Simulator", "--actor", "lobby kiosk", "--since", _month_ago(), "--json")
    rows = json.loads(out)
    assert rows and all(set(row) >= ALERT_KEYS for row in rows)
    assert {row["machine"] for row in rows} == {alternate}
    assert all(row["matched_name"] == alternate for row in rows)
    assert [row["created"] for row in rows] == sorted((row["created"] for row in rows), reverse=True)
    assert "alerts on" in err


def test_defender_alerts_json_has_every_field_kept_with_the_evidence_and_its_detection_status(integration):
    out, _ = _run("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--since", _month_ago(), "--json")
    rows = json.loads(out)
    kept = {"incident_id", "incident_url", "device_id", "threat_family", "threat_name", "detector_id",
            "classification", "determination", "assigned_to", "last_update", "resolved", "service_source",
            "product_name", "evidence", "raw"}  # fmt: skip
    assert rows and all(set(row) >= kept for row in rows)
    assert any(entry["detection_status"] for row in rows for entry in row["evidence"])
    assert all(row["device_id"] for row in rows)


def test_defender_alerts_csv_has_the_same_columns(integration):
    out, _ = _run("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--since", _month_ago(), "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 17
    assert set(rows[0]) == ALERT_KEYS
    assert rows[0]["machine"] == "ws-fin-07.corp.contoso.com"


def test_defender_alerts_prints_a_table_and_a_summary(integration):
    out, _ = _run("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--since", _month_ago())
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["created", "severity", "status", "machine"]
    assert len(lines) == 1 + 17 + 1
    assert lines[-1].startswith("17 alerts on ws-fin-07.corp.contoso.com. Window asked: between ")
    assert lines[-1].endswith(" UTC (± 5 min clock-skew tolerance).")


def test_defender_alerts_default_window_is_the_lookback(integration):
    out, _ = _run("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--json")
    rows = json.loads(out)
    cutoff = datetime.now(UTC) - timedelta(hours=integration.lookback_hours, minutes=10)
    assert all(datetime.fromisoformat(row["created"]) >= cutoff for row in rows)


def test_defender_alerts_for_an_unknown_machine_says_so(integration):
    out, _ = _run("defender_alerts", "Simulator", "--actor", "ws-unknown")
    assert out.strip().startswith("No machine named ws-unknown is known to Defender")


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_defender_alerts_rejects_a_bad_date(integration, option):
    with pytest.raises(CommandError) as failure:
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07", option, "last tuesday")
    assert f"{option} 'last tuesday' is not an ISO 8601 date or time" in str(failure.value)


def test_defender_alerts_rejects_a_window_that_ends_before_it_starts(integration):
    with pytest.raises(CommandError, match="--since is after --until"):
        call_command("defender_alerts", "Simulator", "--actor", "x", "--since", "2024-05-02", "--until", "2024-05-01")


def test_defender_alerts_turns_service_errors_into_command_errors(integration, simulator):
    integration.client_secret = "wrong"
    integration.save()
    with pytest.raises(CommandError, match="AADSTS7000215"):
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07")


def test_defender_alerts_stores_what_it_got_for_the_actor_like_get_alerts(integration, simulator):
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = make_actor(name="Finance workstation", hostname=hostname, alternate_hostname=alternate)
    out, _ = _run("defender_alerts", "Simulator", "--actor", "finance workstation", "--since", _month_ago(), "--json")
    rows = json.loads(out)
    fetch = actor.alert_fetches.get(integration=integration)
    assert fetch.ok and fetch.alert_count == len(rows) == actor.alerts.count() > 0
    assert {alert.alert_id for alert in actor.alerts.all()} == {row["id"] for row in rows}


def test_defender_alerts_for_a_hostname_no_actor_has_only_asks_and_says_nothing_was_stored(integration):
    out, err = _run("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--since", _month_ago(), "--json")
    assert len(json.loads(out)) == 17
    assert "Not stored: no actor is named 'ws-fin-07'" in err
    assert not AlertFetch.objects.exists() and not Alert.objects.exists()


def test_defender_alerts_records_a_failed_ask_for_the_actor_as_the_page_would(integration):
    integration.client_secret = "wrong"
    integration.save()
    actor = make_actor(name="Finance workstation", hostname="ws-fin-07")
    with pytest.raises(CommandError, match="AADSTS7000215"):
        call_command("defender_alerts", "Simulator", "--actor", actor.name)
    fetch = actor.alert_fetches.get(integration=integration)
    assert not fetch.ok and "AADSTS7000215" in fetch.message


# A Remote integration: the command queues the job for its node and waits (a real agent answers it in
# test_remote_agent.py), or says why it cannot.


def remote(integration, **node_fields):
    node = RemoteNode.objects.create(name="dmz-node", **node_fields)
    integration.location = Integration.Location.REMOTE
    integration.remote_node = node
    integration.save()
    return node


def test_defender_alerts_on_a_remote_integration_without_a_node_says_to_choose_one(integration):
    integration.location = Integration.Location.REMOTE
    integration.save()
    with pytest.raises(CommandError, match="is Remote but has no remote node: choose one on its Edit page"):
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07")
    assert not Job.objects.exists()


def test_defender_alerts_on_a_node_that_never_checked_in_says_to_start_its_agent(integration):
    remote(integration, last_seen_at=None)
    with pytest.raises(CommandError) as failure:
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07")
    assert "remote node dmz-node has never checked in: start its agent" in str(failure.value)
    assert not Job.objects.exists()


def test_defender_alerts_gives_up_at_its_timeout_says_why_and_withdraws_the_job(integration, simulator):
    remote(integration, last_seen_at=timezone.now() - timedelta(minutes=5))
    simulator.reset_counters()
    with pytest.raises(CommandError) as failure:
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--timeout", "1")
    message = str(failure.value)
    assert "remote node dmz-node has not checked in since " in message
    assert message.endswith("Wait longer with --timeout SECONDS.")
    job = Job.objects.get()
    assert job.state == Job.State.CANCELLED and "Nobody waited for its answer any more" in job.error
    assert not simulator.requests  # the site never asked Defender itself


def test_defender_alerts_refuses_a_timeout_that_is_not_positive(integration):
    with pytest.raises(CommandError, match="--timeout must be a positive number of seconds"):
        call_command("defender_alerts", "Simulator", "--actor", "ws-fin-07", "--timeout", "0")


def test_defender_test_waits_for_its_run_in_the_background_like_the_button(transactional_db, simulator, settings):
    settings.TASKS_RUN_INLINE = False  # as on the site: the run's steps are recorded by another thread
    simulator_integration(simulator)
    out, _ = _run("defender_test", "Simulator")
    assert [line.split(" (")[0] for line in out.strip().splitlines()] == [f"✓ {name}" for name in STEP_NAMES]
    run = TestRun.objects.get()
    assert run.finished and run.verdict == "passed" and run.integration.last_test_ok is True


# --- defender_test on a Remote integration ---------------------------------------------------------------------------


def test_defender_test_of_a_remote_integration_runs_on_its_node_and_records_the_answer(
    simulator, site_over_https, transactional_db, tmp_path
):
    node, token_file = make_node_with_token_file(tmp_path)
    integration = remote_integration_for(simulator, node)
    simulator.reset_counters()
    agent = start_agent(site_over_https, token_file)
    try:
        wait_until(lambda: RemoteNode.objects.get(pk=node.pk).last_seen_at is not None)
        out, _ = _run("defender_test", integration.name, "--timeout", "60")
    finally:
        output = stop(agent)
    lines = out.strip().splitlines()
    assert [line.split(" (")[0] for line in lines] == [f"✓ {name}" for name in STEP_NAMES], output
    seen = [record for record in simulator.requests if record.kind in ("token", "api")]
    assert seen and all("(remote node)" in record.user_agent for record in seen)  # the node called, not the site
    integration.refresh_from_db()
    assert integration.last_test_ok is True and integration.last_test_summary.startswith("All steps passed")
    run = TestRun.objects.get()
    assert run.job.state == Job.State.DONE and run.verdict == "passed" and run.integration == integration


def test_defender_test_says_at_once_that_a_remote_node_has_never_checked_in(db, simulator):
    node = RemoteNode.objects.create(name="dmz-node")
    remote_integration_for(simulator, node)
    started = time.monotonic()
    with pytest.raises(CommandError) as failure:
        call_command("defender_test", "Defender behind the DMZ", "--timeout", "30")
    assert time.monotonic() - started < 10
    assert failure.value.returncode == 2
    assert "remote node dmz-node has never checked in: start its agent with the command on the node's page." in str(
        failure.value
    )


def test_defender_test_gives_up_after_its_timeout_and_says_what_to_do(db, simulator):
    node = RemoteNode.objects.create(name="dmz-node", last_seen_at=timezone.now())
    integration = remote_integration_for(simulator, node)
    with pytest.raises(CommandError) as failure:
        call_command("defender_test", integration.name, "--timeout", "0.5")
    message = str(failure.value)
    assert failure.value.returncode == 2
    assert "remote node dmz-node has not checked in since " in message
    assert message.endswith("Wait longer with --timeout SECONDS.")
    integration.refresh_from_db()
    assert integration.last_test_at is None  # nothing answered, nothing recorded
    job = Job.objects.get()  # withdrawn, as for Get alerts: a node that checks in later does not run it
    assert job.state == Job.State.CANCELLED and "Nobody waited for its answer any more" in job.error
