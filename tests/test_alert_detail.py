"""Every field kept of an alert, seen as a user sees it: one row per alert of a tenant naming each integration that
returned it, the alert's own page with its evidence and raw JSON, the CSV, over the real simulator."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from defender import alert_store
from defender.models import Alert
from defender.operations import alerts as operations_alerts
from defender.services.alerts import Evidence
from tests.factories import make_actor, make_integration, three_flavours
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.django_db


def last_30_days():
    until = timezone.now()
    return until - timedelta(days=30), until


def actor_page(client, actor, query=""):
    return client.get(reverse("defender:actor-detail", args=[actor.pk]) + query)


def test_an_alert_returned_by_three_integrations_of_one_tenant_is_one_row_naming_all_three(admin_client, simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    integrations = three_flavours(simulator)
    fetches = operations_alerts.fetch_alerts(actor, integrations, *last_30_days())
    assert all(fetch.ok for fetch in fetches), [fetch.message for fetch in fetches]

    response = actor_page(admin_client, actor, "?period=all")

    rows = response.context["table"].page.object_list
    ids = [row.record.alert_id for row in rows]
    assert len(ids) == len(set(ids)) == Alert.objects.filter(actor=actor).count()
    names_of = {row.record.alert_id: [source.integration.name for source in row.record.sources.all()] for row in rows}
    assert ["Defender API", "Graph", "SIEM"] in names_of.values()
    assert "Defender API<br>Graph<br>SIEM" in response.content.decode()


def test_the_alert_page_shows_every_field_its_evidence_and_the_raw_json_escaped(admin_client):
    actor = make_actor()
    evidence = Evidence(
        entity_type="Process",
        process_name="powershell.exe",
        command_line="powershell.exe -c <script>alert(1)</script>",
        parent_process="cmd.exe",
        sha256="b" * 64,
        user="CONTOSO\\alex",
        detection_status="Prevented",
        remediation_status="Remediated",
    )
    alert = defender_alert(
        threat_family="Mimikatz",
        determination="SecurityTesting",
        classification="InformationalExpectedActivity",
        incident_id="77",
        incident_url="https://security.microsoft.com/incidents/77",
        evidence=(evidence,),
        raw={"id": "da638000000000000000_1", "title": "<b>raw</b>"},
    )
    alert_store.store_alerts(actor, make_integration(name="Defender EU"), [alert])
    stored = Alert.objects.get()

    response = admin_client.get(reverse("defender:actor-alert", args=[actor.pk, stored.pk]))

    body = response.content.decode()
    for shown in ("Mimikatz", "SecurityTesting", "InformationalExpectedActivity", "Prevented", "Remediated",
                  "cmd.exe", "b" * 64, "CONTOSO\\alex", "Defender EU"):  # fmt: skip
        assert shown in body
    assert 'href="https://security.microsoft.com/incidents/77"' in body
    assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;b&gt;raw&lt;/b&gt;" in body and '"title": "&lt;b&gt;raw&lt;/b&gt;"'.replace('"', "&quot;") in body


def test_the_alert_page_of_another_actors_alert_is_not_found(admin_client):
    actor, other = make_actor(), make_actor(name="Other", hostname="other-host")
    alert_store.store_alerts(other, make_integration(), [defender_alert()])
    url = reverse("defender:actor-alert", args=[actor.pk, Alert.objects.get().pk])
    assert admin_client.get(url).status_code == 404


def test_the_table_row_links_to_the_alert_page(admin_client):
    actor = make_actor()
    alert_store.store_alerts(actor, make_integration(), [defender_alert(threat_name="HackTool:Win32/Mimikatz")])
    body = actor_page(admin_client, actor).content.decode()
    assert reverse("defender:actor-alert", args=[actor.pk, Alert.objects.get().pk]) in body
    assert "HackTool:Win32/Mimikatz" in body


def test_the_csv_has_the_new_columns_and_the_evidence_with_formulas_neutralised(admin_client):
    actor = make_actor()
    evidence = Evidence(entity_type="File", file_name="=cmd|' /C calc'!A0", sha1="c" * 40, detection_status="Blocked")
    alert = defender_alert(determination="SecurityTesting", threat_name="=HYPERLINK(1)", evidence=(evidence,))
    alert_store.store_alerts(actor, make_integration(name="Defender EU"), [alert])
    alert_store.store_alerts(actor, make_integration(name="Graph"), [alert])

    response = admin_client.get(reverse("defender:actor-alerts-csv", args=[actor.pk]))

    [row] = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert row["Determination"] == "SecurityTesting"
    assert row["Threat name"] == "'=HYPERLINK(1)"
    assert sorted(row["Integration"].split("; ")) == ["Defender EU", "Graph"]
    assert row["Evidence"].startswith("entity_type=File, file_name==cmd")
    assert "detection_status=Blocked" in row["Evidence"]
