"""The store keeps what an integration answered, one row per alert of a tenant, updated in place when asked again.

Alerts built by hand cover what the simulator does not vary.
"""

import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from defender import alert_store, presets
from defender.models import Actor, Alert, AlertSource
from defender.services.alerts import Alert as DefenderAlert
from defender.services.alerts import Evidence
from tests.factories import TENANT_ID, make_actor, make_integration

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
def test_the_same_alert_from_two_integrations_of_one_tenant_is_one_row_naming_both():
    actor = make_actor()
    alert = defender_alert()
    alert_store.store_alerts(actor, make_integration(name="Defender EU"), [alert])
    alert_store.store_alerts(actor, make_integration(name="Graph", tenant_id=TENANT_ID.upper()), [alert])
    row = Alert.objects.get()
    assert sorted(row.integrations.values_list("name", flat=True)) == ["Defender EU", "Graph"]


@pytest.mark.django_db
def test_the_same_alert_id_in_two_tenants_is_two_rows():
    actor = make_actor()
    alert = defender_alert()
    alert_store.store_alerts(actor, make_integration(name="Defender EU"), [alert])
    alert_store.store_alerts(actor, make_integration(name="Other tenant", tenant_id="contoso.example"), [alert])
    assert Alert.objects.count() == 2


@pytest.mark.django_db
def test_an_integration_returning_an_alert_again_keeps_when_it_first_did():
    actor = make_actor()
    integration = make_integration()
    first = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    alert_store.store_alerts(actor, integration, [defender_alert()], first)
    alert_store.store_alerts(actor, integration, [defender_alert()], first + timedelta(hours=1))
    source = AlertSource.objects.get()
    assert (source.first_seen_at, source.last_seen_at) == (first, first + timedelta(hours=1))


@pytest.mark.django_db
def test_deleting_an_integration_keeps_the_alerts_another_one_also_returned():
    actor = make_actor()
    eu, graph = make_integration(name="Defender EU"), make_integration(name="Graph")
    alert_store.store_alerts(actor, eu, [defender_alert("da-both"), defender_alert("da-eu-only")])
    alert_store.store_alerts(actor, graph, [defender_alert("da-both")])

    eu.delete()

    row = Alert.objects.get()
    assert row.alert_id == "da-both"
    assert list(row.integrations.values_list("name", flat=True)) == ["Graph"]


@pytest.mark.django_db
def test_every_field_and_the_evidence_are_stored_and_null_text_is_empty():
    actor = make_actor()
    evidence = Evidence(
        entity_type="Process",
        process_name="powershell.exe",
        command_line="powershell.exe -enc AAAA",
        sha256="a" * 64,
        detection_status="Blocked",
        was_executing=True,
    )
    fields = {
        "incident_id": "42",
        "incident_url": "https://security.microsoft.com/incidents/42",
        "device_id": "ff00",
        "threat_family": "Mimikatz",
        "threat_name": "HackTool:Win32/Mimikatz",
        "detector_id": "17e10bbc",
        "classification": "InformationalExpectedActivity",
        "determination": "SecurityTesting",
        "assigned_to": "secops@contoso.com",
        "last_update": datetime(2026, 5, 1, 13, 0, tzinfo=UTC),
        "resolved": datetime(2026, 5, 1, 14, 0, tzinfo=UTC),
        "service_source": "microsoftDefenderForEndpoint",
        "product_name": "Microsoft Defender for Endpoint",
        "evidence": (evidence,),
    }
    alert_store.store_alerts(actor, make_integration(), [defender_alert(**fields, category="null")])
    row = Alert.objects.get()
    assert {name: getattr(row, name) for name in fields if name != "evidence"} == {
        name: value for name, value in fields.items() if name != "evidence"
    }
    assert row.category == ""
    assert row.evidence[0]["command_line"] == "powershell.exe -enc AAAA"
    assert (row.evidence[0]["detection_status"], row.evidence[0]["was_executing"]) == ("Blocked", True)
    assert row.evidence[0]["file_name"] == ""


@pytest.mark.django_db
def test_an_incident_link_that_is_not_https_is_not_kept():
    actor = make_actor()
    alert_store.store_alerts(actor, make_integration(), [defender_alert(incident_url="javascript:alert(1)")])
    assert Alert.objects.get().incident_url == ""


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
    [
        "javascript:alert(document.cookie)",
        "data:text/html,<script>x</script>",
        "http://security.microsoft.com/x",
        "",
        "https:///alerts/da1",
        "https://",
        "https:// security.microsoft.com/x",
        "xhttps://security.microsoft.com/x",
    ],
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


@pytest.mark.django_db
def test_the_siem_exporters_poorer_copy_never_replaces_what_the_defender_api_stored():
    actor = make_actor()
    evidence = (Evidence(entity_type="Process", process_name="powershell.exe", detection_status="Blocked"),)
    alert_store.store_alerts(actor, make_integration(name="Defender API"), [defender_alert(evidence=evidence)])
    siem = make_integration(name="SIEM", api_flavour=presets.SIEM, resource="https://graph.windows.net", api_version="")
    alert_store.store_alerts(actor, siem, [defender_alert(status="Unknown", first_event=None, evidence=())])

    row = Alert.objects.get()
    assert (row.status, row.evidence[0]["detection_status"]) == ("New", "Blocked")
    assert row.first_event is not None
    assert sorted(row.integrations.values_list("name", flat=True)) == ["Defender API", "SIEM"]


@pytest.mark.django_db
def test_the_defender_api_replaces_what_the_siem_exporter_stored_first():
    actor = make_actor()
    siem = make_integration(name="SIEM", api_flavour=presets.SIEM, resource="https://graph.windows.net", api_version="")
    alert_store.store_alerts(actor, siem, [defender_alert(status="Unknown")])
    alert_store.store_alerts(actor, make_integration(name="Defender API"), [defender_alert(status="InProgress")])
    assert Alert.objects.get().status == "InProgress"


@pytest.mark.django_db
def test_an_alert_whose_raw_json_holds_an_integer_past_64_bits_is_stored_as_sent():
    huge = 2**70
    alert_store.store_alerts(make_actor(), make_integration(), [defender_alert(raw={"id": "da1", "count": huge})])
    assert Alert.objects.get().raw["count"] == huge


@pytest.mark.django_db
def test_the_evidence_is_stored_as_its_fields_on_every_database():
    evidence = Evidence(entity_type="Process", file_name="powershell.exe", sha256="0" * 64)
    alert_store.store_alerts(make_actor(), make_integration(), [defender_alert(evidence=(evidence,))])
    (stored,) = Alert.objects.get().evidence
    assert stored["entity_type"] == "Process"
    assert stored["file_name"] == "powershell.exe"
    assert stored["sha256"] == "0" * 64


@pytest.mark.django_db
def test_no_source_row_outlives_its_alert_on_any_delete_path():
    # The sources have no foreign-key constraint in the database (storing is faster without it), so every delete
    # path must take them with the alert.
    first, second = make_actor(name="first", hostname="ws-1"), make_actor(name="second", hostname="ws-2")
    integration = make_integration()
    for actor, prefix in ((first, "a"), (second, "b")):
        alert_store.store_alerts(actor, integration, [defender_alert(f"{prefix}{number}") for number in range(3)])
    Alert.objects.filter(alert_id="a0").get().delete()
    Alert.objects.filter(alert_id__in=["a1", "b1"]).delete()
    first.delete()
    assert set(AlertSource.objects.values_list("alert__alert_id", flat=True)) == {"b0", "b2"}
    assert AlertSource.objects.count() == Alert.objects.count() == 2
    integration.delete()
    assert not AlertSource.objects.exists()
    assert not Alert.objects.exists()


def store_while_another_holds_the_row(first, second):
    """Run ``first`` in a transaction held open until ``second``, on another connection, is seen waiting on a row lock
    (PostgreSQL's own lock view); then commit it and let ``second`` finish. Forced, not hoped for."""
    from django.db import connection, connections

    if connection.vendor != "postgresql":
        pytest.skip("Only PostgreSQL runs two stores at once; SQLite takes one writer at a time.")
    stored, waiting, failures = threading.Event(), threading.Event(), []

    def holding():
        try:
            with transaction.atomic():
                first()
                stored.set()
                assert waiting.wait(60), "the second store never waited on the row"
        except BaseException as error:  # reported below
            failures.append(error)
        finally:
            connections.close_all()

    def waiting_on_it():
        try:
            assert stored.wait(60)
            second()
        except BaseException as error:
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=holding), threading.Thread(target=waiting_on_it)]
    for thread in threads:
        thread.start()
    assert stored.wait(60)
    deadline = time.monotonic() + 60
    while not waiting.is_set() and time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                waiting.set()
        time.sleep(0.01)
    waiting.set()
    for thread in threads:
        thread.join(60)
    assert not failures, failures


@pytest.mark.django_db(transaction=True)
def test_a_siem_copy_stored_while_the_defender_api_stores_the_same_alert_never_replaces_it():
    actor = make_actor()
    mde = make_integration(name="Defender API")
    siem = make_integration(name="SIEM", api_flavour=presets.SIEM, resource="https://graph.windows.net", api_version="")
    evidence = (Evidence(entity_type="Process", process_name="powershell.exe", detection_status="Blocked"),)
    poorer = defender_alert(status="Unknown", first_event=None, evidence=())
    store_while_another_holds_the_row(
        lambda: alert_store.store_alerts(actor, mde, [defender_alert(evidence=evidence)]),
        lambda: alert_store.store_alerts(actor, siem, [poorer]),
    )
    row = Alert.objects.get()
    assert (row.status, row.evidence[0]["detection_status"]) == ("New", "Blocked")
    assert sorted(row.integrations.values_list("name", flat=True)) == ["Defender API", "SIEM"]


@pytest.mark.django_db(transaction=True)
def test_an_alert_matched_anew_while_another_integration_stores_it_moves_with_every_source():
    first, second = make_actor(name="first"), make_actor(name="second", hostname="ws-2")
    integration, other = make_integration(), make_integration(name="Other")
    store_while_another_holds_the_row(
        lambda: alert_store.store_alerts(first, integration, [defender_alert()]),
        lambda: alert_store.store_alerts(second, other, [defender_alert()]),
    )
    row = Alert.objects.get()
    assert row.actor == second
    assert sorted(AlertSource.objects.values_list("integration__name", "actor__name")) == [
        ("Defender EU", "second"),
        ("Other", "second"),
    ]
    assert [Actor.objects.get(pk=actor.pk).alert_count for actor in (first, second)] == [0, 1]


@pytest.mark.django_db(transaction=True)
def test_a_new_alert_stored_by_two_integrations_at_once_is_one_row_counted_once(caplog):
    # The second store looked for the alert before the first committed it, so it tries to copy it in as new, waits on
    # the first's row, and is refused by the unique constraint: it stores through the upsert instead, at once.
    caplog.set_level(logging.INFO, logger="defender.alert_store")
    actor = make_actor()
    integration, other = make_integration(), make_integration(name="Other")
    store_while_another_holds_the_row(
        lambda: alert_store.store_alerts(actor, integration, [defender_alert(), defender_alert("da2")]),
        lambda: alert_store.store_alerts(actor, other, [defender_alert(status="Resolved"), defender_alert("da3")]),
    )
    assert sorted(Alert.objects.values_list("alert_id", "status")) == [
        ("da2", "New"),
        ("da3", "New"),
        ("da638000000000000000_1", "Resolved"),
    ]
    assert sorted(AlertSource.objects.values_list("alert__alert_id", "integration__name")) == [
        ("da2", "Defender EU"),
        ("da3", "Other"),
        ("da638000000000000000_1", "Defender EU"),
        ("da638000000000000000_1", "Other"),
    ]
    assert Actor.objects.get(pk=actor.pk).alert_count == 3
    assert "again" not in caplog.text, "the refused copy was taken for a value the database refused"
