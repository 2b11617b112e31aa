"""Sync: one sweep per integration, matched to actors here, against simulators with fleets of their own. The calls
are counted by the simulator; the stored rows read back from the database (SQLite, or PostgreSQL by DATABASE_URL)."""

import math
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from defender import tasks
from defender.models import Actor, ActorMachine, Alert, Integration, RemoteNode, SyncState
from defender.operations import sync
from defender.simulator import Simulator
from tests.factories import integration_form_data, make_actor, make_integration, simulator_integration
from tests.fixtures.simulator import cleaned

pytestmark = pytest.mark.django_db
PAGE = 10000


def fleet_simulator(tmp_path_factory, name, alerts, machines, seed):
    sim = Simulator(seed=seed, ca_path=tmp_path_factory.mktemp(name) / "ca.pem")
    sim.fleet_names = sim.seed_fleet(alerts, machines)
    return sim


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory):
    """30,000 alerts on 20 machines (and the seed tenant's own few machines, which are no actor here)."""
    with fleet_simulator(tmp_path_factory, "big-fleet", 30000, 20, seed=5) as sim:
        yield sim


@pytest.fixture(scope="module")
def small_fleet(tmp_path_factory):
    with fleet_simulator(tmp_path_factory, "small-fleet", 120, 4, seed=6) as sim:
        yield sim


@pytest.fixture
def fleet(small_fleet):
    yield from cleaned(small_fleet)


def fleet_actors(names, others):
    """One actor per machine, known by its names in every spelling an operator types (short, FQDN, upper case, or
    only the alternate hostname after a rename); for the first five machines a second actor that names the machine
    only by its alternate short name (a weaker match); and ``others`` actors on machines with no alerts."""
    primaries, seconds = [], []
    for index, fqdn in enumerate(names):
        short = fqdn.split(".")[0]
        spelling = [
            {"hostname": short},
            {"hostname": fqdn},
            {"hostname": short.upper()},
            {"hostname": f"renamed-{index}", "alternate_hostname": fqdn},
        ][index % 4]
        primaries.append(Actor(name=f"machine {index}", **spelling))
        if index < 5:
            seconds.append(Actor(name=f"second {index}", hostname=f"spare-{index}", alternate_hostname=short))
    idle = [Actor(name=f"idle {index}", hostname=f"idle-{index:04d}") for index in range(others)]
    Actor.objects.bulk_create(primaries + seconds + idle)
    by_name = {actor.name: actor for actor in Actor.objects.all()}
    return [by_name[actor.name] for actor in primaries], [by_name[actor.name] for actor in seconds]


def alerts_by_machine(sim, since):
    counts = {}
    for alert in sim.data.alerts:
        if alert["lastUpdateTime"] >= since:
            counts[alert["computerDnsName"]] = counts.get(alert["computerDnsName"], 0) + 1
    return counts


def test_one_sweep_stores_every_actors_alerts_within_the_page_count_and_a_second_asks_once_or_twice(big_fleet):
    primaries, seconds = fleet_actors(big_fleet.fleet_names, others=1000 - 25)
    assert Actor.objects.count() == 1000
    integration = simulator_integration(big_fleet)
    big_fleet.reset_counters()

    first = sync.sync_integration(integration)

    assert first.ok, first.error
    assert big_fleet.api_calls == first.calls <= math.ceil(30000 / PAGE) + 2
    expected = alerts_by_machine(big_fleet, timezone.now() - timedelta(hours=integration.lookback_hours))
    for actor, fqdn in zip(primaries, big_fleet.fleet_names, strict=True):
        stored = Alert.objects.filter(actor=actor)
        assert stored.count() == expected[fqdn] == Actor.objects.get(pk=actor.pk).alert_count
        assert set(stored.values_list("machine_name", flat=True)) == {fqdn}
    assert sum(expected[name] for name in big_fleet.fleet_names) == 30000
    assert Alert.objects.count() == first.stored == first.matched == 30000
    assert not Alert.objects.filter(actor__in=seconds).exists()
    # The five machines with a second, weaker actor: their alerts matched twice and went to the better match.
    assert first.multiple_matches == sum(expected[name] for name in big_fleet.fleet_names[:5])
    others = sum(count for name, count in expected.items() if name not in big_fleet.fleet_names)
    assert first.unmatched == others and first.fetched == 30000 + others
    assert first.actors_touched == 20
    # Each machine's ID is learnt for its actor.
    assert ActorMachine.objects.filter(actor__in=primaries).count() == 20

    big_fleet.reset_counters()
    second = sync.sync_integration(integration)
    assert second.ok and big_fleet.api_calls == second.calls <= 2
    # Only the clock-skew tolerance before the cursor is read again, and none of it stored or counted twice.
    assert second.stored == second.unmatched == 0 and second.fetched == second.unchanged
    state = SyncState.objects.get(integration=integration)
    assert state.last_ok and state.last_summary["calls"] == second.calls and state.claimed_at is None


def test_a_changed_alert_is_stored_by_the_next_sweep_and_a_renamed_machine_stays_its_actors(fleet):
    [first_name, *_] = fleet.fleet_names
    actor = make_actor(hostname=first_name.split(".")[0])
    integration = simulator_integration(fleet)
    assert sync.sync_integration(integration).ok
    alert = next(item for item in fleet.data.alerts if item["computerDnsName"] == first_name)
    # Renamed in Defender: the name no longer matches, the learnt machine ID still does.
    alert["computerDnsName"] = "renamed-laptop.corp.contoso.com"
    fleet.update_alert(alert["id"], timezone.now() + timedelta(seconds=1))
    try:
        fleet.reset_counters()
        summary = sync.sync_integration(integration)
        assert summary.stored == 1 and summary.fetched == 1 + summary.unchanged and fleet.api_calls == 1
        stored = Alert.objects.get(alert_id=alert["id"])
        assert stored.actor == actor and stored.machine_name == "renamed-laptop.corp.contoso.com"
    finally:
        alert["computerDnsName"] = first_name
        fleet.update_alert(alert["id"], alert["lastUpdateTime"])  # served with its own name again


def test_alerts_of_machines_that_are_no_actor_are_counted_not_stored(fleet):
    make_actor(hostname="nobody-here")
    summary = sync.sync_integration(simulator_integration(fleet))
    assert summary.ok and summary.fetched > 0
    assert summary.unmatched == summary.fetched and summary.stored == 0
    assert not Alert.objects.exists()


def test_an_actor_known_by_its_ip_address_gets_its_machines_alerts(fleet):
    machine = fleet.data.machine_by_name(fleet.fleet_names[1])
    actor = make_actor(hostname="not-its-name", ip_address=machine["lastIpAddress"])
    fleet.reset_counters()
    summary = sync.sync_integration(simulator_integration(fleet))
    expected = alerts_by_machine(fleet, timezone.now() - timedelta(hours=24))[machine["computerDnsName"]]
    assert Alert.objects.filter(actor=actor).count() == expected == summary.stored
    # One call maps the machines to their addresses, one reads the alerts.
    assert summary.calls == fleet.api_calls == 2


def refuse_inserting(alert_id):
    """The database refuses one alert's row (a real refusal of the database, not a stand-in for the store)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_alert() RETURNS trigger AS $$ BEGIN "
                "IF NEW.alert_id = %s THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                [alert_id],
            )
            cursor.execute(
                "CREATE TRIGGER refuse_alert BEFORE INSERT OR UPDATE ON defender_alert "
                "FOR EACH ROW EXECUTE FUNCTION refuse_alert()"
            )
        else:
            quoted = alert_id.replace("'", "''")
            cursor.execute(
                f"CREATE TRIGGER refuse_alert BEFORE INSERT ON defender_alert WHEN NEW.alert_id = '{quoted}' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


def test_the_cursor_does_not_move_when_a_page_cannot_be_stored(fleet):
    make_actor(hostname=fleet.fleet_names[0].split(".")[0])
    integration = simulator_integration(fleet)
    refused = next(item["id"] for item in fleet.data.alerts if item["computerDnsName"] == fleet.fleet_names[0])
    refuse_inserting(refused)

    summary = sync.sync_integration(integration)

    assert not summary.ok and "failed unexpectedly" in summary.error
    state = SyncState.objects.get(integration=integration)
    assert state.cursor is None and state.last_ok is False and state.claimed_at is None
    assert not Alert.objects.exists()  # the page is one transaction: nothing of it stays


def test_a_second_worker_is_refused_while_a_sweep_runs_and_a_stale_claim_is_taken_over(fleet):
    integration = simulator_integration(fleet)
    now = timezone.now()
    SyncState.objects.create(integration=integration, claimed_at=now, claim="held-by-another-worker")
    fleet.reset_counters()
    summary = sync.sync_integration(integration)
    assert summary.skipped.startswith("another sweep of it is running") and fleet.api_calls == 0
    stale = now - timedelta(seconds=sync.CLAIM_STALE_SECONDS + 1)
    SyncState.objects.filter(integration=integration).update(claimed_at=stale)
    assert sync.sync_integration(integration).ok
    assert SyncState.objects.get(integration=integration).claim == ""


def test_remote_and_disabled_integrations_are_skipped_saying_why(fleet):
    node = RemoteNode.objects.create(name="dmz-node")
    remote = simulator_integration(fleet, name="Remote", location=Integration.Location.REMOTE, remote_node=node)
    disabled = simulator_integration(fleet, name="Disabled", enabled=False)
    fleet.reset_counters()
    assert "it is Remote (run by dmz-node)" in sync.sync_integration(remote).skipped
    assert "disabled" in sync.sync_integration(disabled).skipped
    assert fleet.api_calls == 0


def test_full_sweeps_the_lookback_window_again(fleet):
    make_actor(hostname=fleet.fleet_names[2].split(".")[0])
    integration = simulator_integration(fleet)
    first = sync.sync_integration(integration)
    again = sync.sync_integration(integration, full=True)
    assert again.fetched == first.fetched > 0 and again.stored == first.stored
    assert Alert.objects.count() == first.stored


def test_the_command_prints_progress_and_a_summary(fleet):
    make_actor(hostname=fleet.fleet_names[0].split(".")[0])
    integration = simulator_integration(fleet, name="Fleet")
    out, err = StringIO(), StringIO()
    call_command("sync_alerts", str(integration.pk), stdout=out, stderr=err)
    counts = alerts_by_machine(fleet, timezone.now() - timedelta(hours=24))
    mine, every = counts[fleet.fleet_names[0]], sum(counts.values())
    assert (
        f"Fleet: 1 call, {every} alerts fetched, {mine} matched, {mine} stored on 1 actor, {every - mine} on machines "
        "that are no actor." in out.getvalue()
    )
    assert f"page 1, {every} fetched, {mine} stored on 1 actors" in err.getvalue()
    out = StringIO()
    call_command("sync_alerts", "fleet", stdout=out, stderr=StringIO())
    assert re.search(
        r"Fleet: 1 call, (\d+) alerts fetched, 0 matched, 0 stored on 0 actors, 0 on machines that are no actor"
        r"(, \1 read again unchanged)?\.",
        out.getvalue(),
    )


def test_an_alert_defender_shows_late_stamped_before_the_cursor_is_found_by_the_next_sweep(fleet):
    actor = make_actor(hostname=fleet.fleet_names[0].split(".")[0])
    integration = simulator_integration(fleet)
    assert sync.sync_integration(integration).ok
    cursor = SyncState.objects.get(integration=integration).cursor
    alert = next(item for item in fleet.data.alerts if item["computerDnsName"] == fleet.fleet_names[0])
    original = alert["lastUpdateTime"]
    Alert.objects.filter(alert_id=alert["id"]).delete()
    # As if Defender had not shown it to the first sweep: stamped a minute before the cursor, inside the tolerance.
    fleet.update_alert(alert["id"], cursor - timedelta(seconds=60))
    try:
        summary = sync.sync_integration(integration)
        assert summary.ok and summary.stored == 1
        assert Alert.objects.get(alert_id=alert["id"]).actor == actor
        # Past the tolerance, a sweep would not see it: it asks from the cursor less the tolerance.
        Alert.objects.filter(alert_id=alert["id"]).delete()
        cursor = SyncState.objects.get(integration=integration).cursor
        fleet.update_alert(alert["id"], cursor - timedelta(seconds=integration.clock_skew_seconds + 60))
        assert sync.sync_integration(integration).stored == 0
    finally:
        fleet.update_alert(alert["id"], original)


def test_the_command_names_what_it_does_not_know_and_fails_on_a_failed_sweep(fleet):
    simulator_integration(fleet, name="Fleet")
    with pytest.raises(
        CommandError, match=r"No integration is named or numbered 'Nope', '999'\. Known integrations: Fleet"
    ):
        call_command("sync_alerts", "Nope", "999")
    fleet.faults.set(fail_next=5, fail_status=500)
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 1 sweep failed"):
        call_command("sync_alerts", stdout=out, stderr=StringIO())
    assert "Fleet: 1 call, 0 alerts fetched" in out.getvalue()
    assert "Stopped: Defender failed with HTTP 500 on /api/v1.0/alerts (InternalServerError" in out.getvalue()


def test_one_failing_integration_never_stops_the_task_sweeping_the_next(fleet):
    make_actor(hostname=fleet.fleet_names[0].split(".")[0])
    broken = make_integration(name="A unreachable", host="127.0.0.1", port=1, connect_timeout=1.0, max_retries=0)
    working = simulator_integration(fleet, name="B fleet")
    tasks.sync_alerts.apply(throw=True)
    assert SyncState.objects.get(integration=broken).last_ok is False
    assert SyncState.objects.get(integration=working).last_ok is True
    assert Alert.objects.exists()


def test_a_new_integration_sweeps_every_ten_minutes_and_the_form_turns_it_off(admin_client):
    admin_client.post(reverse("defender:integration-add", args=["defender_atp"]), integration_form_data())
    integration = Integration.objects.get()
    assert sync.schedule_minutes(integration) == sync.DEFAULT_MINUTES
    task = PeriodicTask.objects.get(pk=integration.sync_schedule_id)
    assert task.task == sync.SCHEDULED_TASK and task.args == f"[{integration.pk}]"
    edit = reverse("defender:integration-edit", args=[integration.pk])
    page = admin_client.get(edit)
    assert 'name="sync_minutes" value="10"' in page.content.decode()
    admin_client.post(edit, integration_form_data(client_secret="", sync_minutes="0"))
    integration.refresh_from_db()
    assert integration.sync_schedule is None and not PeriodicTask.objects.filter(task=sync.SCHEDULED_TASK).exists()


def test_deleting_an_integration_deletes_its_sweep_schedule():
    integration = make_integration()
    sync.set_schedule(integration, 10)
    integration.delete()
    assert not PeriodicTask.objects.filter(task=sync.SCHEDULED_TASK).exists()


def test_the_actor_page_says_when_each_integration_last_synced(fleet, admin_client):
    actor = make_actor(hostname=fleet.fleet_names[0].split(".")[0])
    integration = simulator_integration(fleet, name="Fleet")
    summary = sync.sync_integration(integration)
    page = admin_client.get(reverse("defender:actor-detail", args=[actor.pk])).content.decode()
    assert (
        "<strong>Fleet</strong> last synced" in page
        and f"{summary.stored:,} alerts stored</span> for every actor" in page
    )


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_one_sweep_at_the_same_moment_get_it_once():
    import threading

    from django.db import connections

    integration = make_integration()
    state = SyncState.objects.create(integration=integration)
    ready = threading.Barrier(2, timeout=30)
    claims = []

    def claim():
        try:
            ready.wait()  # both threads send their UPDATE together
            claims.append(sync._claim(state))
        finally:
            connections.close_all()

    workers = [threading.Thread(target=claim) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(claims) == 2 and sum(token is not None for token in claims) == 1
    assert SyncState.objects.get(pk=state.pk).claim in claims


@pytest.mark.django_db(transaction=True)
def test_the_migration_schedules_a_sweep_of_every_enabled_integration():
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("defender", "0017_alert_data_path")], [("defender", "0018_alert_sync")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps.get_model("defender", "Integration")
        common = {"client_id": "c", "auth_url": "https://login.microsoftonline.com", "resource": "https://r"}
        on = old.objects.create(name="On", host="api.security.microsoft.com", tenant_id="t-1", **common)
        old.objects.create(name="Off", host="api.security.microsoft.com", tenant_id="t-1", enabled=False, **common)
        executor = MigrationExecutor(connection)
        executor.migrate(after)
        migrated = executor.loader.project_state(after).apps.get_model("defender", "Integration")
        [task] = PeriodicTask.objects.filter(task=sync.SCHEDULED_TASK)
        assert (
            task.args == f"[{on.pk}]"
            and task.interval.every == 10
            and task.name == f"Alert sweep: On (integration {on.pk})"
        )
        assert migrated.objects.get(name="On").sync_schedule_id == task.pk
        assert migrated.objects.get(name="Off").sync_schedule_id is None
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def test_settings_system_names_the_integration_of_each_sweep_schedule(admin_client):
    integration = make_integration(name="Defender EU")
    sync.set_schedule(integration, 10)
    page = admin_client.get("/settings/system/").content.decode()
    assert f"Alert sweep: Defender EU (integration {integration.pk})" in page
    assert "alert sweep of <a" in page


@pytest.mark.parametrize("flavour", ["graph", "siem"])
def test_graph_and_siem_integrations_sweep_into_the_same_actors(fleet, flavour):
    from defender import presets
    from tests.fixtures.connection import RESOURCES

    flavour = presets.GRAPH if flavour == "graph" else presets.SIEM
    fqdn = fleet.fleet_names[1]
    actor = make_actor(hostname=fqdn.split(".")[0])
    integration = simulator_integration(
        fleet, api_flavour=flavour, resource=RESOURCES[flavour], api_version=presets.DEFAULT_API_VERSION[flavour]
    )
    summary = sync.sync_integration(integration)
    assert summary.ok and summary.stored > 0 and fleet.api_calls >= 1
    stored = Alert.objects.filter(actor=actor)
    assert stored.count() == summary.stored == Alert.objects.count()
    assert {name.split(".")[0] for name in stored.values_list("machine_name", flat=True)} == {fqdn.split(".")[0]}
    assert SyncState.objects.get(integration=integration).cursor is not None


def test_matching_prefers_the_learnt_machine_then_exact_names_then_short_names_then_the_ip_address():
    from defender.operations import matching

    fqdn = make_actor(name="fqdn", hostname="ws-fin-07.corp.contoso.com")
    short = make_actor(name="short", hostname="ws-fin-07")
    alternate = make_actor(name="alternate", hostname="old-name", alternate_hostname="WS-FIN-07.corp.contoso.com")
    by_ip = make_actor(name="by ip", hostname="elsewhere", ip_address="10.20.1.7")
    make_actor(name="a neighbour", hostname="ws-fin-071")
    other_domain = make_actor(name="another domain", hostname="ws-fin-07.lab.example")
    learnt = make_actor(name="learnt", hostname="renamed")
    index = matching.ActorIndex(Actor.objects.all(), [(learnt.pk, "machine-1")])
    found = index.matches("ws-fin-07.corp.contoso.com", "machine-1", ["10.20.1.7"])
    assert [(match.actor_id, match.rank) for match in found] == [
        (learnt.pk, matching.MACHINE_ID),
        (fqdn.pk, matching.HOSTNAME),
        (alternate.pk, matching.ALTERNATE),
        (short.pk, matching.HOSTNAME_SHORT),
        (by_ip.pk, matching.IP_ADDRESS),
    ]
    assert found[3].matched_name == "ws-fin-07" and found[4].matched_name == "10.20.1.7"
    assert index.matches("10.20.1.7") == []  # an IP address is no host name
    # A short name names the host in any domain; two FQDNs must be equal.
    assert [match.actor_id for match in index.matches("WS-FIN-07")] == [
        short.pk,
        fqdn.pk,
        other_domain.pk,
        alternate.pk,
    ]


def test_the_demo_integration_is_swept_every_ten_minutes_and_a_second_seed_keeps_its_schedule(simulator):
    from defender.demo import seed_demo

    integration = seed_demo(simulator)
    assert sync.schedule_minutes(integration) == sync.DEFAULT_MINUTES
    sync.set_schedule(integration, 0)
    assert sync.schedule_minutes(seed_demo(simulator)) is None


def test_renaming_an_actor_forgets_the_machines_learnt_for_it(fleet, admin_client):
    [first_name, *_] = fleet.fleet_names
    actor = make_actor(hostname=first_name.split(".")[0])
    assert sync.sync_integration(simulator_integration(fleet)).ok
    assert ActorMachine.objects.filter(actor=actor).exists()
    data = {"name": actor.name, "hostname": actor.hostname, "alternate_hostname": "", "ip_address": "", "notes": ""}
    data["operating_system"] = actor.operating_system
    kept = admin_client.post(reverse("defender:actor-edit", args=[actor.pk]), {**data, "notes": "kept"})
    assert kept.status_code == 302
    assert ActorMachine.objects.filter(actor=actor).exists()  # a note changed, not which endpoint it is
    response = admin_client.post(reverse("defender:actor-edit", args=[actor.pk]), {**data, "hostname": "ws-new-99"})
    assert response.status_code == 302
    assert not ActorMachine.objects.filter(actor=actor).exists()
