"""Get alerts stores what Defender answered, one row per alert, and records each integration's ask.

The simulator runs on a real socket (tests.fixtures.simulator); alerts built by hand cover what it does not vary.
"""

import csv
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from defender import alert_export, alert_store
from defender.models import Alert, AlertFetch, Integration
from defender.operations import alerts as operations_alerts
from defender.services.alerts import Alert as DefenderAlert
from tests.factories import make_actor, make_integration, simulator_integration

THIRTY_DAYS = timedelta(days=30)


def last_30_days():
    until = timezone.now()
    return until - THIRTY_DAYS, until


def defender_alert(alert_id="da638000000000000000_1", **fields):
    created = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    values = {
        "id": alert_id,
        "title": "Suspicious PowerShell command line",
        "severity": "Medium",
        "status": "New",
        "category": "Execution",
        "detection_source": "WindowsDefenderAtp",
        "created": created,
        "first_event": created - timedelta(minutes=5),
        "last_event": created - timedelta(minutes=1),
        "machine_name": "ws-fin-07.corp.contoso.com",
        "matched_name": "ws-fin-07",
        "mitre_techniques": ("T1059.001",),
        "portal_url": f"https://security.microsoft.com/alerts/{alert_id}",
        "raw": {"id": alert_id, "status": fields.get("status", "New")},
    }
    values.update(fields)
    return DefenderAlert(**values)


@pytest.mark.django_db
def test_get_alerts_stores_the_rows_defender_answered(simulator):
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = make_actor(hostname=hostname, alternate_hostname=alternate)
    integration = simulator_integration(simulator)

    [fetch] = operations_alerts.fetch_alerts(actor, [integration], *last_30_days())

    assert fetch.ok, fetch.message
    stored = Alert.objects.filter(actor=actor, integration=integration)
    assert stored.count() == fetch.alert_count > 0
    alert = stored.first()
    assert alert.matched_name == hostname
    assert alert.machine_name.lower().startswith(hostname.lower())
    assert alert.severity_rank == Alert.SEVERITY_RANKS[alert.severity]
    assert alert.raw["id"] == alert.alert_id
    assert alert.portal_url.startswith("https://security.microsoft.com/alerts/")


@pytest.mark.django_db
def test_asking_again_updates_the_rows_instead_of_adding_more(simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    integration = simulator_integration(simulator)
    operations_alerts.fetch_alerts(actor, [integration], *last_30_days())
    first_count = Alert.objects.count()

    operations_alerts.fetch_alerts(actor, [integration], *last_30_days())

    assert Alert.objects.count() == first_count
    assert AlertFetch.objects.filter(actor=actor, integration=integration).count() == 1


@pytest.mark.django_db
def test_an_alert_changed_in_defender_updates_its_row():
    actor = make_actor()
    integration = make_integration()
    alert_store.store_alerts(actor, integration, [defender_alert(status="New")])
    row = Alert.objects.get()
    first_seen = row.first_seen_at

    later = timezone.now() + timedelta(minutes=5)
    changed = defender_alert(status="Resolved", severity="High", title="Renamed by Defender")
    alert_store.store_alerts(actor, integration, [changed], now=later)

    row = Alert.objects.get()
    assert (row.status, row.severity, row.severity_rank, row.title) == ("Resolved", "High", 4, "Renamed by Defender")
    assert row.raw == {"id": changed.id, "status": "Resolved"}
    assert row.first_seen_at == first_seen
    assert row.updated_at == later


@pytest.mark.django_db
def test_the_same_alert_twice_in_one_answer_is_stored_once():
    actor = make_actor()
    integration = make_integration()
    alert = defender_alert()

    assert alert_store.store_alerts(actor, integration, [alert, replace(alert, machine_name="ws-fin-07")]) == 1
    assert Alert.objects.get().machine_name == "ws-fin-07.corp.contoso.com"


@pytest.mark.django_db
def test_the_same_alert_id_from_two_integrations_is_two_rows():
    actor = make_actor()
    alert = defender_alert()
    alert_store.store_alerts(actor, make_integration(name="Defender EU"), [alert])
    alert_store.store_alerts(actor, make_integration(name="Defender US"), [alert])
    assert Alert.objects.count() == 2


@pytest.mark.django_db
def test_many_alerts_are_stored_in_batches():
    actor = make_actor()
    integration = make_integration()
    alerts = [defender_alert(f"da{number}") for number in range(alert_store.BATCH_SIZE * 2 + 7)]
    assert alert_store.store_alerts(actor, integration, alerts) == len(alerts)
    assert Alert.objects.count() == len(alerts)


@pytest.mark.django_db
def test_an_unknown_severity_is_stored_as_unspecified_and_ranked_lowest():
    alert_store.store_alerts(make_actor(), make_integration(), [defender_alert(severity="Severe")])
    assert (Alert.objects.get().severity, Alert.objects.get().severity_rank) == ("Unspecified", 0)


@pytest.mark.django_db
def test_one_failing_integration_does_not_stop_the_others(simulator, closed_port):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    working = simulator_integration(simulator, name="Simulator")
    wrong_secret = simulator_integration(simulator, name="Wrong secret", client_secret="not-the-secret")
    closed = simulator_integration(simulator, name="Closed port", port=closed_port)

    fetches = operations_alerts.fetch_alerts(actor, [working, wrong_secret, closed], *last_30_days())

    assert [fetch.integration.name for fetch in fetches] == ["Simulator", "Wrong secret", "Closed port"]
    assert [fetch.ok for fetch in fetches] == [True, False, False]
    assert "secret" in fetches[1].message.lower()
    assert str(closed_port) in fetches[2].message
    assert not_secret_in(fetches, "not-the-secret")
    assert Alert.objects.filter(integration=working).count() == fetches[0].alert_count > 0
    assert not Alert.objects.filter(integration__in=[wrong_secret, closed]).exists()


def not_secret_in(fetches, secret):
    return all(secret not in fetch.message for fetch in fetches)


@pytest.mark.django_db
def test_a_secret_no_key_opens_is_reported_for_its_integration_only(simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    working = simulator_integration(simulator, name="Simulator")
    unreadable = simulator_integration(simulator, name="Old key")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Integration._meta.db_table} SET client_secret = %s WHERE id = %s",
            ["fernet:v1:not-a-token", unreadable.pk],
        )
    integrations = Integration.objects.filter(pk__in=[working.pk, unreadable.pk]).order_by("name")

    old_key, simulator_fetch = operations_alerts.fetch_alerts(actor, integrations, *last_30_days())

    assert simulator_fetch.ok and simulator_fetch.alert_count > 0
    assert not old_key.ok
    assert "Cannot decrypt client_secret" in old_key.message
    assert "enter the secret again" in old_key.message


@pytest.mark.django_db
def test_an_unexpected_failure_is_recorded_and_the_others_still_answer(monkeypatch):
    def answer(settings, hostnames, since, until):
        if settings.name == "Broken":
            raise KeyError("value")
        raise AssertionError("only Broken is asked")

    monkeypatch.setattr(operations_alerts, "alerts_for_actor", answer)
    [fetch] = operations_alerts.fetch_alerts(make_actor(), [make_integration(name="Broken")], *last_30_days())
    assert not fetch.ok
    assert fetch.message == "Getting alerts from Broken failed unexpectedly; the server log has the details."


@pytest.mark.django_db
def test_an_empty_answer_records_the_names_and_the_window_searched(simulator):
    actor = make_actor(hostname="no-such-host", alternate_hostname="no-such-host.corp.contoso.com")
    integration = simulator_integration(simulator)
    since, until = last_30_days()

    [fetch] = operations_alerts.fetch_alerts(actor, [integration], since, until)

    assert fetch.ok and fetch.alert_count == 0
    assert fetch.tried_names == ["no-such-host", "no-such-host.corp.contoso.com"]
    # The window as asked, and the tolerance Defender was asked with on top of it.
    assert (fetch.since, fetch.until) == (since, until)
    assert fetch.clock_skew_seconds == integration.clock_skew_seconds == 300
    skew = timedelta(seconds=integration.clock_skew_seconds)
    assert fetch.searched == (since - skew, until + skew)
    assert "no-such-host" in fetch.message


@pytest.mark.django_db
def test_an_actor_known_only_by_its_alternate_hostname_gets_alerts(simulator):
    hostname, alternate = next(pair for pair in simulator.actor_hostnames() if pair[1])
    actor = make_actor(hostname=hostname, alternate_hostname=alternate)

    [fetch] = operations_alerts.fetch_alerts(actor, [simulator_integration(simulator)], *last_30_days())

    assert fetch.ok and fetch.alert_count > 0
    assert set(Alert.objects.values_list("matched_name", flat=True)) == {alternate}


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\rcmd", "'\rcmd"),
        ("Suspicious PowerShell", "Suspicious PowerShell"),
        ("", ""),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell, written):
    assert alert_export.neutralise(cell) == written


@pytest.mark.parametrize(
    "cell",
    [
        "  =1+1",
        " +cmd",
        '\n=HYPERLINK("http://evil")',
        "\n\n  @SUM(A1)",
        "\u00a0-2+3",  # a no-break space
        "\u3000=1",  # an ideographic (full-width) space
        "＝1+1",
        "＋cmd",
        "－2+3",
        "＠SUM(A1)",
        " ＝1",
        "\n＠SUM(A1)",
        "﹦1",  # the small form of =
    ],
)
def test_formula_starts_after_leading_whitespace_or_a_line_feed_or_in_full_width_are_neutralised(cell):
    assert alert_export.neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["Defender saw = 1 alert", "ws-fin-07", "a\n=b", "T1059.001; T1105", " 42"])
def test_text_with_a_formula_character_later_on_is_left_alone(cell):
    assert alert_export.neutralise(cell) == cell


@pytest.mark.django_db
def test_the_csv_has_a_header_and_one_line_per_alert():
    actor = make_actor()
    alert_store.store_alerts(
        actor, make_integration(), [defender_alert("a1"), defender_alert("a2", title="=cmd|' /C calc'!A0")]
    )

    rows = list(csv.reader("".join(alert_export.csv_lines(alert_store.stored_alerts(actor))).splitlines()))

    assert rows[0] == alert_export.CSV_HEADER
    assert len(rows) == 3
    assert {row[2] for row in rows[1:]} == {"Suspicious PowerShell command line", "'=cmd|' /C calc'!A0"}
    assert rows[1][0] == "2026-05-01 12:00:00"


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(document.cookie)", "data:text/html,<script>x</script>", "http://security.microsoft.com/x", ""],
)
@pytest.mark.django_db
def test_a_portal_link_that_is_not_https_is_never_stored(url):
    actor = make_actor()
    integration = make_integration()
    alert_store.store_alerts(actor, integration, [defender_alert(portal_url=url)])
    assert Alert.objects.get().portal_url == ""


@pytest.mark.django_db
def test_an_https_portal_link_is_kept():
    actor = make_actor()
    alert_store.store_alerts(
        actor, make_integration(), [defender_alert(portal_url="https://security.microsoft.com/alerts/da1")]
    )
    assert Alert.objects.get().portal_url == "https://security.microsoft.com/alerts/da1"
