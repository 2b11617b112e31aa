"""defender_test and defender_alerts: output shapes, exit codes and what they record, against the simulator."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from defender.services.process import PROCESS
from tests.factories import make_actor, make_integration

STEP_KEYS = {"name", "outcome", "duration_ms", "message"}
ALERT_KEYS = {"id", "title", "severity", "status", "created", "machine", "mitre_techniques"}


@pytest.fixture(autouse=True)
def fresh_credentials():
    PROCESS.clear()


@pytest.fixture
def integration(db, simulator):
    return make_integration(
        name="Simulator",
        host=simulator.host,
        port=simulator.port,
        auth_url=simulator.auth_url,
        tenant_id=simulator.tenant_id,
        client_id=simulator.app.client_id,
        client_secret=simulator.app.client_secret,
        ca_certificate=simulator.ca_pem,
        connect_timeout=2.0,
    )


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
