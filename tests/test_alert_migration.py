"""The migration to one alert per tenant: the same alert stored once per integration becomes one row naming each,
and every integration gets the cloud its host says."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("defender", "0012_field_labels_and_help_texts")]
AFTER = [("defender", "0013_alerts_per_tenant_evidence_cloud")]


@pytest.fixture
def migrated_back_to_the_latest():
    """The tests after this one expect every migration applied, whatever came after the one tested here."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("migrated_back_to_the_latest")
def test_the_same_alert_stored_by_two_integrations_of_a_tenant_becomes_one_row_naming_both():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Integration, Actor, Alert = (old.get_model("defender", name) for name in ("Integration", "Actor", "Alert"))
    common = {"client_id": "c", "auth_url": "https://login.microsoftonline.us", "resource": "https://r"}
    mde = Integration.objects.create(name="MDE", host="api-gov.securitycenter.microsoft.us", tenant_id="T-1", **common)
    graph = Integration.objects.create(name="Graph", host="dod-graph.microsoft.us", tenant_id="t-1", **common)
    other = Integration.objects.create(name="Other", host="api.security.microsoft.com", tenant_id="t-2", **common)
    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    now = timezone.now()
    for integration in (mde, graph, other):
        Alert.objects.create(
            integration=integration, actor=actor, alert_id="da1", title=f"from {integration.name}",
            first_seen_at=now, updated_at=now,
        )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Integration, Alert = new.get_model("defender", "Integration"), new.get_model("defender", "Alert")

    rows = {row.tenant_id: sorted(row.integrations.values_list("name", flat=True)) for row in Alert.objects.all()}
    assert rows == {"t-1": ["Graph", "MDE"], "t-2": ["Other"]}
    assert dict(Integration.objects.values_list("name", "cloud")) == {
        "MDE": "gcc-high",
        "Graph": "dod",
        "Other": "commercial",
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("migrated_back_to_the_latest")
def test_the_raw_answer_evidence_and_techniques_survive_the_change_to_json_text_and_back():
    json_text = [("defender", "0024_alert_json_as_text")]
    before = [("defender", "0023_alert_source_actor")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Actor, Alert = old.get_model("defender", "Actor"), old.get_model("defender", "Alert")
    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    now = timezone.now()
    kept = {
        "raw": {"id": "da1", "evidence": [{"sha1": "ab" * 20}], "big": 2**70},
        "evidence": [{"entity_type": "File", "file_name": "x.ps1"}],
        "mitre_techniques": ["T1059.001"],
    }
    Alert.objects.create(tenant_id="t-1", actor=actor, alert_id="da1", first_seen_at=now, updated_at=now, **kept)

    for target in (json_text, before, json_text):
        executor = MigrationExecutor(connection)
        executor.migrate(target)
        Alert = executor.loader.project_state(target).apps.get_model("defender", "Alert")
        assert Alert.objects.values(*kept).get() == kept
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_typeof(raw)::text, pg_typeof(evidence)::text FROM defender_alert")
            assert cursor.fetchone() == ("json", "json")
    assert Alert.objects.filter(mitre_techniques=["T1059.001"]).count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("migrated_back_to_the_latest")
def test_alerts_stored_before_the_json_migration_has_run_keep_their_json():
    # The code of a release may run before its migration has: the columns are still jsonb, whose binary form is not
    # JSON's text, so they are copied as text then.
    from defender import alert_store
    from defender.models import Alert
    from tests.factories import make_actor, make_integration
    from tests.test_alert_store import defender_alert

    executor = MigrationExecutor(connection)
    executor.migrate([("defender", "0023_alert_source_actor")])
    actor, integration = make_actor(), make_integration()
    alert_store.store_alerts(actor, integration, [defender_alert(raw={"id": "da1", "nested": {"n": [1, 2]}})])
    alert_store.store_alerts(actor, integration, [defender_alert(raw={"id": "da1", "nested": {"n": [3]}})])
    assert list(Alert.objects.values_list("raw", "mitre_techniques")) == [
        ({"id": "da1", "nested": {"n": [3]}}, ["T1059.001"])
    ]
