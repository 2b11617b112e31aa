"""The sweep service against a simulator with a fleet of its own: keyset pages by lastUpdateTime, alerts that share
a time across a page boundary read once, the unordered fallback when $orderby is refused, and the calls each
takes (counted by the simulator)."""

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from defender import presets
from defender.services import sweep
from defender.services.auth import api_client
from defender.simulator import Simulator
from tests.fixtures.connection import settings_for
from tests.fixtures.simulator import cleaned

FLEET_ALERTS, FLEET_MACHINES, PAGE = 250, 3, 100


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    sim = Simulator(seed=11, ca_path=tmp_path_factory.mktemp("fleet") / "ca.pem")
    sim.fleet_names = sim.seed_fleet(FLEET_ALERTS, FLEET_MACHINES)
    with sim:
        yield sim


@pytest.fixture
def clean_fleet(fleet):
    yield from cleaned(fleet)


def updated_since(sim, since):
    return {alert["id"] for alert in sim.data.alerts if alert["lastUpdateTime"] >= since}


def swept(sim, since, seen=(), page_size=PAGE):
    api = api_client(settings_for(sim))
    return list(sweep.sweep(api, since, seen, page_size))


def ids_of(pages):
    return [item.alert.id for page in pages for item in page.alerts]


def test_keyset_pages_read_every_alert_updated_since_the_cursor_once(clean_fleet):
    since = clean_fleet.data.now - timedelta(hours=24)
    pages = swept(clean_fleet, since)
    ids = ids_of(pages)
    assert len(ids) == len(set(ids)) == len(updated_since(clean_fleet, since))
    assert set(ids) == updated_since(clean_fleet, since)
    # Each page after the first starts at the last one's last time, so at most one more call than full pages.
    assert clean_fleet.api_calls == len(pages) <= math.ceil(len(ids) / PAGE) + 1
    cursors = [page.cursor for page in pages]
    assert all(cursor is not None for cursor in cursors) and cursors == sorted(cursors)
    newest = max(alert["lastUpdateTime"] for alert in clean_fleet.data.alerts)
    assert pages[-1].cursor == newest


def test_the_cursor_with_its_alerts_asks_once_and_reads_nothing_again(clean_fleet):
    since = clean_fleet.data.now - timedelta(hours=24)
    last = swept(clean_fleet, since)[-1]
    clean_fleet.reset_counters()
    again = swept(clean_fleet, last.cursor, last.cursor_ids)
    assert ids_of(again) == [] and clean_fleet.api_calls == 1
    assert again[-1].cursor == last.cursor and set(again[-1].cursor_ids) == set(last.cursor_ids)


def test_alerts_sharing_one_time_across_a_page_boundary_are_read_once(clean_fleet):
    # More alerts at one time than a page holds: the cursor cannot move, so the next page skips what was read.
    when = datetime.now(UTC).replace(microsecond=123456)
    tied = [alert["id"] for alert in clean_fleet.data.alerts[: PAGE + 30]]
    for alert_id in tied:
        clean_fleet.update_alert(alert_id, when)
    try:
        since = clean_fleet.data.now - timedelta(hours=24)
        ids = ids_of(swept(clean_fleet, since))
        assert len(ids) == len(set(ids)) == len(updated_since(clean_fleet, since))
        assert set(tied) <= set(ids)
    finally:
        for alert_id in tied:
            clean_fleet.update_alert(alert_id, clean_fleet.data.now - timedelta(hours=1))


def test_an_updated_alert_is_read_again_by_the_next_sweep(clean_fleet):
    since = clean_fleet.data.now - timedelta(hours=24)
    last = swept(clean_fleet, since)[-1]
    changed = clean_fleet.data.alerts[0]["id"]
    clean_fleet.update_alert(changed, last.cursor + timedelta(seconds=1))
    clean_fleet.reset_counters()
    again = swept(clean_fleet, last.cursor, last.cursor_ids)
    assert ids_of(again) == [changed] and clean_fleet.api_calls == 1
    assert again[-1].cursor == last.cursor + timedelta(seconds=1) and again[-1].cursor_ids == (changed,)


def test_refused_orderby_falls_back_to_unordered_pages_and_moves_the_cursor_at_the_end(clean_fleet):
    clean_fleet.faults.set(refuse_orderby_on_alerts=True)
    since = clean_fleet.data.now - timedelta(hours=24)
    pages = swept(clean_fleet, since)
    ids = ids_of(pages)
    assert set(ids) == updated_since(clean_fleet, since) and len(ids) == len(set(ids))
    assert [page.cursor for page in pages[:-1]] == [None] * (len(pages) - 1)
    assert pages[-1].cursor == max(alert["lastUpdateTime"] for alert in clean_fleet.data.alerts)
    assert "refused $orderby" in pages[-1].note
    # The refused call, then the pages.
    assert clean_fleet.api_calls == len(pages) + 1
    refused = [record for record in clean_fleet.requests if record.status == 400]
    assert len(refused) == 1 and "orderby" in refused[0].query.lower()


def test_an_api_that_ignores_orderby_is_read_unordered_rather_than_by_a_keyset_that_would_skip(clean_fleet):
    clean_fleet.faults.set(ignore_orderby_on_alerts=True)
    since = clean_fleet.data.now - timedelta(hours=24)
    pages = swept(clean_fleet, since)
    ids = ids_of(pages)
    assert set(ids) == updated_since(clean_fleet, since) and len(ids) == len(set(ids))
    assert [page.cursor for page in pages[:-1]] == [None] * (len(pages) - 1)
    # The first, ordered ask is read as unordered, then the pages again.
    assert clean_fleet.api_calls == len(pages) + 1


def test_swept_alerts_name_their_machine_by_name_and_id(clean_fleet):
    since = clean_fleet.data.now - timedelta(hours=24)
    items = [item for page in swept(clean_fleet, since) for item in page.alerts]
    machines = {machine["computerDnsName"]: machine["id"] for machine in clean_fleet.data.machines}
    assert {item.reported for item in items} <= set(machines)
    assert all(machines[item.reported] == item.machine_id for item in items)
    assert all(item.alert.matched_name == "" for item in items)


def test_machine_addresses_take_one_call(clean_fleet):
    api = api_client(settings_for(clean_fleet))
    addresses = sweep.machine_addresses(api)
    assert api.calls == clean_fleet.api_calls == 1
    machine = clean_fleet.data.machines[0]
    assert machine["lastIpAddress"] in addresses[machine["id"]]


@pytest.mark.parametrize("flavour", [presets.GRAPH, presets.SIEM])
def test_graph_and_siem_sweeps_read_the_alerts_updated_since_the_cursor(clean_fleet, flavour):
    from tests.fixtures.connection import RESOURCES

    settings = settings_for(
        clean_fleet, flavour, resource=RESOURCES[flavour], api_version=presets.DEFAULT_API_VERSION[flavour]
    )
    since = clean_fleet.data.now - timedelta(hours=24)
    pages = list(sweep.sweep(api_client(settings), since))
    ids = ids_of(pages)
    assert len(ids) == len(set(ids))
    # Graph has every Defender for Endpoint alert; the SIEM exporter those it processed in the window.
    assert set(ids) <= {alert["id"] for alert in clean_fleet.data.alerts}
    assert len(ids) > FLEET_ALERTS / 2
    assert pages[-1].cursor is not None and pages[-1].cursor >= since
    names = {item.reported.split(".")[0] for page in pages for item in page.alerts}
    assert {name.split(".")[0] for name in clean_fleet.fleet_names} <= names


PATIENCE = 10.0  # seconds: far beyond what a page of 100 alerts takes, only so that a broken build fails, not hangs


def calls_reach(sim, count):
    deadline = time.monotonic() + PATIENCE
    while sim.api_calls < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return sim.api_calls


def read_ahead_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("read-ahead")]


def test_the_next_page_is_asked_for_while_the_caller_stores_this_one(clean_fleet):
    since = datetime(2000, 1, 1, tzinfo=UTC)
    pages = sweep.sweep(api_client(settings_for(clean_fleet)), since, (), PAGE)
    first = next(pages)
    # The caller holds page 1 (as if storing it) and has asked for nothing more: page 2 is on its way all the same.
    assert calls_reach(clean_fleet, 2) == 2
    every = [first, *pages]
    ids = ids_of(every)
    assert len(ids) == len(set(ids)) and set(ids) == updated_since(clean_fleet, since)
    assert clean_fleet.api_calls == len(every) <= math.ceil(len(ids) / PAGE) + 1
    assert not read_ahead_threads()


def test_a_sweep_stopped_after_a_page_waits_for_the_next_in_flight_and_asks_for_nothing_more(clean_fleet):
    since = datetime(2000, 1, 1, tzinfo=UTC)
    pages = sweep.sweep(api_client(settings_for(clean_fleet)), since, (), PAGE)
    next(pages)
    pages.close()  # storing page 1 failed, say
    assert not read_ahead_threads()
    assert clean_fleet.api_calls == 2
