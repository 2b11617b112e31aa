"""The data path at scale: counts kept per actor, pages read from the far end equal to OFFSET pages, filters without
DISTINCT, and query counts that do not grow with the rows. Runs on SQLite and PostgreSQL (DATABASE_URL)."""

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.core.paginator import Paginator
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone
from django_tables2 import RequestConfig

from defender import alert_store
from defender.filters import AlertFilter
from defender.models import Actor, Alert, AlertSource
from defender.tables import paging
from defender.tables.alerts import AlertTable
from tests.factories import make_actor, make_integration
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.django_db
SEVERITIES = ["High", "Medium", "Low", "Informational", "Unspecified"]
STATUSES = ["New", "InProgress", "Resolved"]


def alerts(count, prefix="da", start=0):
    created = datetime(2026, 5, 1, tzinfo=UTC)
    return [
        defender_alert(
            f"{prefix}{index}",
            title=f"Title {index % 7}",
            severity=SEVERITIES[index % 5],
            status=STATUSES[index % 3],
            category=f"Category {index % 4}",
            detection_source=f"Source {index % 2}",
            machine_name=f"ws-{index % 3}",
            # Ties on purpose: the order must fall back on creation, then the key.
            created=created + timedelta(hours=index // 4),
        )
        for index in range(start, start + count)
    ]


def count_of(actor):
    return Actor.objects.get(pk=actor.pk).alert_count


def test_the_store_counts_new_alerts_once_and_updates_do_not_count_again():
    actor, integration = make_actor(), make_integration()
    alert_store.store_alerts(actor, integration, alerts(30))
    assert count_of(actor) == 30
    alert_store.store_alerts(actor, integration, [replace(alert, title="Changed") for alert in alerts(30)])
    assert count_of(actor) == 30
    alert_store.store_alerts(actor, integration, alerts(40))
    assert count_of(actor) == 40 == Alert.objects.filter(actor=actor).count()


def test_an_alert_matched_to_another_actor_moves_its_count_with_it():
    first, second, integration = (
        make_actor(name="first"),
        make_actor(name="second", hostname="ws-2"),
        make_integration(),
    )
    alert_store.store_alerts(first, integration, alerts(10))
    alert_store.store_alerts(second, integration, alerts(4))
    assert (count_of(first), count_of(second)) == (6, 4)


def test_deleting_an_integration_or_alerts_in_the_admin_keeps_the_counts(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "x"))
    actor, integration = make_actor(), make_integration()
    other = make_integration(name="Other")
    alert_store.store_alerts(actor, integration, alerts(10))
    alert_store.store_alerts(actor, other, alerts(3))
    integration.delete()  # the 7 only it returned go
    assert count_of(actor) == 3 == Alert.objects.filter(actor=actor).count()
    one = Alert.objects.filter(actor=actor).first()
    assert client.post(reverse("admin:defender_alert_delete", args=[one.pk]), {"post": "yes"}).status_code == 302
    assert count_of(actor) == 2
    client.post(
        reverse("admin:defender_alert_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": list(Alert.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )
    assert count_of(actor) == 0


def page_of(actor, query):
    request = RequestFactory().get("/", query)
    table = AlertTable(alert_store.stored_alerts(actor), actor=actor)
    RequestConfig(request, paginate={"per_page": 10}).configure(table)
    return table, [row.record.pk for row in table.page.object_list]


@pytest.mark.parametrize(
    "sort", ["created", "severity", "title", "category", "detection_source", "status", "machine_name"]
)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("keys_first_above", [paging.KEYS_FIRST_ABOVE, 15], ids=["whole-rows", "keys-first"])
def test_every_page_of_every_sort_equals_the_offset_page(sort, descending, keys_first_above, monkeypatch):
    # Lowered, the keys-first read serves every page of these 95 rows, from either end.
    monkeypatch.setattr(paging, "KEYS_FIRST_ABOVE", keys_first_above)
    actor, integration = make_actor(), make_integration()
    alert_store.store_alerts(actor, integration, alerts(95))
    order = f"-{sort}" if descending else sort
    table, first = page_of(actor, {"sort": order})
    everything = list(table.sorted_alerts().values_list("pk", flat=True))
    plain = Paginator(everything, 10)
    for number in plain.page_range:
        _, shown = page_of(actor, {"sort": order, "page": number})
        assert shown == list(plain.page(number).object_list), f"page {number}"


def test_filters_give_the_same_rows_as_plain_conditions():
    actor, integration = make_actor(), make_integration()
    other = make_integration(name="Other")
    alert_store.store_alerts(actor, integration, alerts(60))
    alert_store.store_alerts(actor, other, alerts(20))  # returned by both: still one row each
    for severities, statuses in itertools.product([[], ["High"], ["Low", "Medium"]], [[], ["New", "Resolved"]]):
        query = {"period": "all", "severity": severities, "status": statuses}
        filtered = AlertFilter(query, queryset=alert_store.stored_alerts(actor)).qs
        expected = Alert.objects.filter(actor=actor)
        expected = expected.filter(severity__in=severities) if severities else expected
        expected = expected.filter(status__in=statuses) if statuses else expected
        assert sorted(filtered.values_list("pk", flat=True)) == sorted(expected.values_list("pk", flat=True))
        assert "DISTINCT" not in str(filtered.query)


def test_the_window_last_asked_shows_each_alert_once_when_two_integrations_returned_it(admin_client):
    actor, integration = make_actor(), make_integration()
    other = make_integration(name="Other")
    now = datetime.now(UTC)
    recent = [replace(alert, created=now - timedelta(hours=1)) for alert in alerts(5)]
    for source in (integration, other):
        outcome = alert_store.Outcome(source, True, "ok", now - timedelta(days=1), now, alerts=tuple(recent))
        alert_store.record_outcome(actor, outcome, now)
    response = admin_client.get(reverse("defender:actor-detail", args=[actor.pk]))
    assert len(response.context["table"].page.object_list) == 5


def test_an_alert_matched_to_another_actor_is_in_its_window_by_every_integration_that_returned_it(admin_client):
    first, second = make_actor(name="first"), make_actor(name="second", hostname="ws-2")
    integration, other = make_integration(), make_integration(name="Other")
    alert_store.store_alerts(first, integration, alerts(10))
    alert_store.store_alerts(first, other, alerts(10))
    alert_store.store_alerts(second, integration, alerts(4))  # matched anew: four move, with both their sources
    sources = AlertSource.objects.values_list("actor_id", "alert__actor_id")
    assert all(source == alert for source, alert in sources)
    # The second actor's window last asked of the other integration: the four it returned, though it never asked
    # for them on this actor.
    since, until = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    alert_store.record_outcome(second, alert_store.Outcome(other, True, "ok", since, until), until)
    response = admin_client.get(reverse("defender:actor-detail", args=[second.pk]))
    assert {row.record.alert_id for row in response.context["table"].page.object_list} == {f"da{i}" for i in range(4)}
    alert_store.record_outcome(first, alert_store.Outcome(other, True, "ok", since, until), until)
    response = admin_client.get(reverse("defender:actor-detail", args=[first.pk]))
    assert {row.record.alert_id for row in response.context["table"].page.object_list} == {
        f"da{i}" for i in range(4, 10)
    }


def test_an_alert_moved_to_another_actor_in_the_admin_takes_its_sources_along():
    first, second = make_actor(name="first"), make_actor(name="second", hostname="ws-2")
    alert_store.store_alerts(first, make_integration(), alerts(2))
    alert = Alert.objects.get(alert_id="da0")
    alert.actor = second
    alert.save()
    assert set(AlertSource.objects.filter(alert=alert).values_list("actor_id", flat=True)) == {second.pk}
    assert AlertSource.objects.get(alert__alert_id="da1").actor_id == first.pk


def grow(actor, integration, count):
    alert_store.store_alerts(actor, integration, alerts(count, prefix=f"{actor.pk}-"))


def queries_for(client, django_assert_num_queries, url, expected):
    with django_assert_num_queries(expected):
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("page", ["defender:actor-list", "defender:integration-list", "actor"])
def test_pages_make_as_many_queries_with_many_rows_as_with_few(admin_client, django_assert_num_queries, page):
    actors = [make_actor(name=f"actor-{index}", hostname=f"ws-{index}") for index in range(3)]
    integrations = [make_integration(name=f"Integration {index}") for index in range(3)]
    url = reverse("defender:actor-detail", args=[actors[0].pk]) if page == "actor" else reverse(page)
    for actor in actors:
        grow(actor, integrations[0], 5)
    admin_client.get(url)  # sessions and caches warmed
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        admin_client.get(url)
    for index in range(3, 30):
        make_actor(name=f"actor-{index}", hostname=f"ws-{index}")
        make_integration(name=f"Integration {index}")
    for actor in actors:
        grow(actor, integrations[1], 200)
    queries_for(admin_client, django_assert_num_queries, url, len(few.captured_queries))
    if page == "defender:actor-list":
        assert not any("defender_alert" in query["sql"] for query in few.captured_queries)


def test_the_csv_export_is_unchanged_by_the_streaming_rewrite(admin_client):
    actor, integration = make_actor(), make_integration()
    other = make_integration(name="Another")
    alert_store.store_alerts(actor, integration, alerts(3))
    alert_store.store_alerts(actor, other, alerts(1))
    lines = b"".join(admin_client.get(reverse("defender:actor-alerts-csv", args=[actor.pk])).streaming_content)
    rows = lines.decode().splitlines()
    assert len(rows) == 4
    assert sum("Another; " in row or "; Another" in row for row in rows) == 1


@pytest.mark.django_db
def test_storing_pays_for_no_index_or_foreign_key_check_that_another_index_already_covers():
    from django.db import connection

    with connection.cursor() as cursor:
        alert = connection.introspection.get_constraints(cursor, Alert._meta.db_table)
        source = connection.introspection.get_constraints(cursor, AlertSource._meta.db_table)
    # Every index of the alerts that starts with the actor is a sort index with more columns after it.
    assert all(
        len(found["columns"]) > 1 for found in alert.values() if found["index"] and found["columns"][:1] == ["actor_id"]
    )
    assert not any(found["foreign_key"] for found in source.values() if found["columns"] == ["alert_id"])
    assert not any(found["index"] and found["columns"] == ["alert_id"] for found in source.values())
    # What remains covers the lookups: the alert and its integration together, unique.
    assert any(found["unique"] and found["columns"] == ["alert_id", "integration_id"] for found in source.values())


def across_migration(before, after, fill, check):
    """Migrate back to ``before``, ``fill(Integration, Actor, Alert, AlertSource)`` as the models were then, migrate
    to ``after`` and ``check(apps)`` with the models as they are then; the database ends at the latest migration."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("defender", before)], [("defender", after)]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        fill(*(old.get_model("defender", name) for name in ("Integration", "Actor", "Alert", "AlertSource")))
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        check(executor.loader.project_state(after).apps)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


COMMON = {"client_id": "c", "tenant_id": "t-1", "auth_url": "https://login.microsoftonline.com"}


@pytest.mark.django_db(transaction=True)
def test_the_migration_ranks_the_alerts_only_the_siem_exporter_returned_as_its_poorer_copies():
    def fill(Integration, Actor, Alert, AlertSource):
        mde = Integration.objects.create(name="MDE", host="api.security.microsoft.com", api_flavour="mde", **COMMON)
        siem = Integration.objects.create(
            name="SIEM", host="wdatp-alertexporter-eu.securitycenter.windows.com", api_flavour="siem", **COMMON
        )
        actor = Actor.objects.create(name="ws", hostname="ws-1")
        now = timezone.now()
        for alert_id, returned_by in (("both", (mde, siem)), ("siem-only", (siem,)), ("mde-only", (mde,))):
            alert = Alert.objects.create(
                tenant_id="t-1", actor=actor, alert_id=alert_id, created=now, first_seen_at=now, updated_at=now
            )
            for integration in returned_by:
                AlertSource.objects.create(alert=alert, integration=integration, first_seen_at=now, last_seen_at=now)

    def check(apps):
        ranks = dict(apps.get_model("defender", "Alert").objects.values_list("alert_id", "detail_rank"))
        assert ranks == {"both": 1, "siem-only": 0, "mde-only": 1}

    across_migration("0020_alert_store_fewer_checks", "0021_alert_detail_rank", fill, check)


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_each_source_its_alerts_actor():
    def fill(Integration, Actor, Alert, AlertSource):
        mde = Integration.objects.create(name="MDE", host="api.security.microsoft.com", **COMMON)
        other = Integration.objects.create(name="Other", host="api.security.microsoft.com", **COMMON)
        now = timezone.now()
        for name in ("ws-1", "ws-2"):
            actor = Actor.objects.create(name=name, hostname=name)
            alert = Alert.objects.create(
                tenant_id="t-1", actor=actor, alert_id=name, created=now, first_seen_at=now, updated_at=now
            )
            for integration in (mde, other):
                AlertSource.objects.create(alert=alert, integration=integration, first_seen_at=now, last_seen_at=now)

    def check(apps):
        sources = apps.get_model("defender", "AlertSource").objects
        pairs = sorted(sources.values_list("alert__alert_id", "actor__name"))
        assert pairs == [("ws-1", "ws-1"), ("ws-1", "ws-1"), ("ws-2", "ws-2"), ("ws-2", "ws-2")]

    across_migration("0022_executions_and_outcomes", "0023_alert_source_actor", fill, check)
