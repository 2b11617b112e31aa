"""The store keeps what an integration answered, one row per alert, updated in place when asked again.

Alerts built by hand cover what the simulator does not vary.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from defender import alert_store
from defender.models import Alert
from defender.services.alerts import Alert as DefenderAlert
from tests.factories import make_actor, make_integration

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
