"""Alerts for an actor against the simulator: machine matching, windows, three flavours, paging and faults."""

import dataclasses
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from defender import presets
from defender.services import alerts
from defender.services.alerts import Window, alerts_for_actor, describe_window, same_host
from defender.services.errors import BadResponse, PermissionMissing, Throttled
from tests.fixtures.connection import settings_for

MONTH = timedelta(days=31)
FLAVOURS = [presets.MDE, presets.GRAPH, presets.SIEM]


def _active(alert, since, until):
    """Whether the seed alert's activity (first to last event, creation included) overlaps [since, until]."""
    times = [datetime.fromisoformat(alert[name]) for name in ("firstEventTime", "alertCreationTime", "lastEventTime")]
    return min(times) <= until and max(times) >= since


def _expected_ids(simulator, machine, since, until):
    """Ids of the seed alerts on machine active within [since, until], newest first."""
    chosen = [
        alert for alert in simulator.alerts if alert["computerDnsName"] == machine and _active(alert, since, until)
    ]
    chosen.sort(key=lambda alert: alert["alertCreationTime"], reverse=True)
    return [alert["id"] for alert in chosen]


def _month(settings):
    until = datetime.now(UTC)
    return until - MONTH, until


@pytest.mark.parametrize(
    ("wanted", "reported", "same"),
    [
        ("ws-fin-07", "ws-fin-07.corp.contoso.com", True),
        ("WS-FIN-07.corp.contoso.com", "ws-fin-07", True),
        ("ws-fin-07.corp.contoso.com", "ws-fin-07.other.example", False),
        ("ws-fin-07", "ws-fin-071.corp.contoso.com", False),
        ("10.0.0.5", "10.0.0.5", True),
        ("10.0.0.5", "10", False),
    ],
)
def test_a_short_name_and_its_fqdn_are_the_same_host(wanted, reported, same):
    assert same_host(wanted, reported) is same


def test_short_name_finds_the_fqdn_machine_but_not_its_prefix_sibling(simulator):
    settings = settings_for(simulator)
    since, until = _month(settings)
    result = alerts_for_actor(settings, ["ws-fin-07"], since, until)
    assert [alert.id for alert in result.alerts] == _expected_ids(
        simulator, "ws-fin-07.corp.contoso.com", result.window.since, result.window.until
    )
    assert len(result.alerts) == 17
    assert {alert.machine_name for alert in result.alerts} == {"ws-fin-07.corp.contoso.com"}
    assert {alert.matched_name for alert in result.alerts} == {"ws-fin-07"}


def test_fqdn_actor_finds_a_machine_defender_knows_by_its_bare_name(simulator):
    settings = settings_for(simulator)
    result = alerts_for_actor(settings, ["BUILD-LNX-05.corp.contoso.com"], *_month(settings))
    assert len(result.alerts) == 5
    assert {alert.machine_name for alert in result.alerts} == {"build-lnx-05"}


def test_alternate_hostname_finds_a_renamed_machine(simulator):
    settings = settings_for(simulator)
    hostname, alternate = next(pair for pair in simulator.actor_hostnames() if pair[1])
    result = alerts_for_actor(settings, [hostname, alternate], *_month(settings))
    assert result.tried_names == (hostname, alternate)
    assert result.alerts
    assert {alert.matched_name for alert in result.alerts} == {alternate}


def test_unknown_machine_is_a_message_not_an_error(simulator):
    result = alerts_for_actor(settings_for(simulator), ["ws-x", "ws-x-alt.corp.contoso.com"])
    assert result.alerts == []
    assert result.message.startswith("No machine named ws-x or ws-x-alt.corp.contoso.com is known to Defender")
    assert "ws-x*" in result.message and "ws-x-alt*" in result.message


def test_window_excludes_older_alerts_and_is_widened_by_the_clock_skew(simulator):
    settings = settings_for(simulator, clock_skew_seconds=600)
    until = datetime.now(UTC)
    since = until - timedelta(hours=2)
    result = alerts_for_actor(settings, ["ws-fin-07"], since, until)
    assert result.window == (since - timedelta(minutes=10), until + timedelta(minutes=10))
    expected = _expected_ids(simulator, "ws-fin-07.corp.contoso.com", *result.window)
    assert 0 < len(expected) < 17
    assert [alert.id for alert in result.alerts] == expected


def test_default_window_is_the_lookback_ending_now(simulator):
    settings = settings_for(simulator, lookback_hours=5, clock_skew_seconds=0)
    result = alerts_for_actor(settings, ["ws-fin-07"])
    assert timedelta(hours=5) == result.window.until - result.window.since
    assert abs(result.window.until - datetime.now(UTC)) < timedelta(seconds=30)


def test_alerts_are_normalised_newest_first(simulator):
    settings = settings_for(simulator)
    found = alerts_for_actor(settings, ["dc-01.corp.contoso.com"], *_month(settings)).alerts
    assert [alert.created for alert in found] == sorted((alert.created for alert in found), reverse=True)
    for alert in found:
        assert alert.severity in {"Informational", "Low", "Medium", "High", "Unspecified"}
        assert alert.status in {"New", "InProgress", "Resolved", "Unknown"}
        assert alert.created.tzinfo is not None
        assert alert.portal_url == f"https://security.microsoft.com/alerts/{alert.id}"
        assert isinstance(alert.mitre_techniques, tuple)
        assert alert.raw["id"] == alert.id
    assert "raw" not in repr(found[0])


@pytest.mark.parametrize("flavour", [presets.GRAPH, presets.SIEM])
def test_graph_and_siem_give_the_same_alerts_as_the_defender_api(simulator, flavour):
    since, until = datetime.now(UTC) - MONTH, datetime.now(UTC)
    mde = alerts_for_actor(settings_for(simulator), ["ws-fin-07"], since, until)
    other = alerts_for_actor(settings_for(simulator, flavour), ["ws-fin-07"], since, until)
    assert [alert.id for alert in other.alerts] == [alert.id for alert in mde.alerts]
    assert [alert.created for alert in other.alerts] == [alert.created for alert in mde.alerts]
    assert [alert.severity for alert in other.alerts] == [alert.severity for alert in mde.alerts]
    assert {alert.machine_name for alert in other.alerts} == {"ws-fin-07.corp.contoso.com"}
    assert all(alert.portal_url.startswith("https://security.microsoft.com/") for alert in other.alerts)


def test_graph_and_siem_say_how_many_alerts_were_for_other_machines(simulator):
    for flavour in (presets.GRAPH, presets.SIEM):
        result = alerts_for_actor(settings_for(simulator, flavour), ["ws-nowhere"], datetime.now(UTC) - MONTH)
        assert result.alerts == []
        assert result.message.startswith("No alerts on ws-nowhere in that window")
        assert "were on other machines" in result.message


def test_the_window_is_described_as_asked_with_the_clock_skew_tolerance_said_once():
    asked = Window(datetime(2026, 11, 9, 23, 55, tzinfo=UTC), datetime(2026, 11, 20, 0, 5, tzinfo=UTC))

    assert describe_window(asked, 300) == (
        "between 2026-11-10 00:00 and 2026-11-20 00:00 UTC (± 5 min clock-skew tolerance)"
    )
    assert describe_window(asked, 0) == "between 2026-11-09 23:55 and 2026-11-20 00:05 UTC"
    assert describe_window(asked, 90).endswith("(± 90 s clock-skew tolerance)")


def test_paging_across_several_pages_returns_every_alert_once(clean_simulator):
    settings = settings_for(clean_simulator, page_size=4)
    result = alerts_for_actor(settings, ["ws-fin-07"], *_month(settings))
    assert len(result.alerts) == len({alert.id for alert in result.alerts}) == 17
    assert clean_simulator.api_calls == 1 + 5  # the machine lookup, then 17 alerts in pages of 4


def test_429_in_the_middle_of_paging_is_waited_out_and_every_alert_comes_once(clean_simulator):
    clean_simulator.faults.set(throttle_every=3, retry_after=1)
    settings = settings_for(clean_simulator, page_size=5)
    result = alerts_for_actor(settings, ["ws-fin-07"], *_month(settings))
    assert len(result.alerts) == len({alert.id for alert in result.alerts}) == 17
    assert 429 in {record.status for record in clean_simulator.requests}


def test_a_500_that_recovers_is_retried(clean_simulator):
    clean_simulator.faults.set(fail_next=1, fail_status=500)
    settings = settings_for(clean_simulator)
    assert len(alerts_for_actor(settings, ["ws-fin-07"], *_month(settings)).alerts) == 17


def test_a_malformed_page_is_a_clear_error_with_no_partial_result(clean_simulator):
    clean_simulator.faults.set(malformed_page=2)
    settings = settings_for(clean_simulator, page_size=5)
    with pytest.raises(BadResponse) as failure:
        alerts_for_actor(settings, ["ws-fin-07"], *_month(settings))
    assert "Page 2 of /api/v1.0/machines/" in str(failure.value)
    assert "was not valid JSON; no partial result shown" in str(failure.value)


def test_legacy_api_paths_without_a_version_work(simulator):
    settings = settings_for(simulator, api_version="")
    assert alerts.api_prefix(settings) == "/api"
    assert len(alerts_for_actor(settings, ["ws-fin-07"], *_month(settings)).alerts) == 17


def test_a_403_from_the_api_names_the_permission_and_where_to_grant_it(simulator):
    settings = settings_for(simulator, app=simulator.app_without_roles)
    with pytest.raises(PermissionMissing) as failure:
        alerts.probe_api(settings)
    message = str(failure.value)
    assert "refused the call to /api/v1.0/alerts (403 Forbidden" in message
    assert "Alert.Read.All" in message
    assert "App registrations > this app > API permissions" in message and "WindowsDefenderATP" in message


def test_the_cheap_api_call_reads_at_most_one_alert(clean_simulator):
    for flavour in (presets.MDE, presets.GRAPH, presets.SIEM):
        assert alerts.probe_api(settings_for(clean_simulator, flavour)).endswith("answered 200 with 1 alert.")
    assert all(record.status == 200 for record in clean_simulator.requests if record.kind == "api")


def test_alert_is_a_frozen_value(simulator):
    settings = settings_for(simulator)
    alert = alerts_for_actor(settings, ["ws-fin-07"], *_month(settings)).alerts[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.title = "changed"


# --- evidence, activity windows, IP actors, narrowing (Microsoft's documented behaviour) --------------------------


def _merged_alert(simulator):
    """A seed alert whose activity runs on past its creation (Defender merged later detections into it)."""
    return max(
        (a for a in simulator.alerts if a["computerDnsName"] == "ws-fin-07.corp.contoso.com"),
        key=lambda a: datetime.fromisoformat(a["lastEventTime"]) - datetime.fromisoformat(a["alertCreationTime"]),
    )


@pytest.mark.parametrize("flavour", [presets.MDE, presets.GRAPH, presets.SIEM])
def test_an_alert_created_before_the_window_and_active_inside_it_is_returned(simulator, flavour):
    merged = _merged_alert(simulator)
    created, last = (datetime.fromisoformat(merged[name]) for name in ("alertCreationTime", "lastEventTime"))
    assert last - created > timedelta(minutes=1)
    settings = settings_for(simulator, flavour, clock_skew_seconds=0)
    result = alerts_for_actor(settings, ["ws-fin-07"], created + (last - created) / 2, datetime.now(UTC))
    assert merged["id"] in [alert.id for alert in result.alerts]


def test_the_window_asks_by_last_update_not_by_creation(clean_simulator):
    for flavour, field in [(presets.MDE, "lastUpdateTime ge "), (presets.GRAPH, "lastUpdateDateTime ge ")]:
        alerts_for_actor(settings_for(clean_simulator, flavour), ["ws-fin-07"], *_month(None))
        queries = [record.query for record in clean_simulator.requests if "alerts" in record.path]
        assert any(field.replace(" ", "+") in query or quote(field) in query for query in queries), queries
        assert not any("CreationTime" in query or "createdDateTime" in query for query in queries)
        clean_simulator.reset_counters()


def test_mde_and_graph_alerts_carry_their_evidence_with_detection_status(simulator):
    for flavour in (presets.MDE, presets.GRAPH):
        found = alerts_for_actor(settings_for(simulator, flavour), ["ws-fin-07"], *_month(None)).alerts
        assert all(alert.evidence for alert in found)
        statuses = {entry.detection_status for alert in found for entry in alert.evidence}
        assert {"Detected", "Prevented"} <= statuses, flavour
        assert any(entry.command_line and entry.parent_process for alert in found for entry in alert.evidence)


def test_siem_keeps_every_detection_of_an_alert_as_its_evidence(simulator):
    found = alerts_for_actor(settings_for(simulator, presets.SIEM), ["ws-fin-07"], *_month(None)).alerts
    by_id = {alert["id"]: alert for alert in simulator.alerts}
    for alert in found:
        artefacts = [item for item in by_id[alert.id]["evidence"] if item["entityType"] in ("File", "Process")]
        assert len(alert.evidence) == max(1, len(artefacts))
    assert any(len(alert.evidence) > 1 for alert in found)


def test_the_three_flavours_agree_on_the_new_fields(simulator):
    month = _month(None)
    results = [alerts_for_actor(settings_for(simulator, f), ["ws-fin-07"], *month).alerts for f in FLAVOURS]
    for name in ("device_id", "detection_source", "threat_name", "detector_id", "service_source"):
        assert len({tuple(getattr(alert, name) for alert in found) for found in results}) == 1, name
    mde, graph, _ = results
    for name in ("incident_id", "classification", "determination", "assigned_to", "last_update", "resolved"):
        assert [getattr(alert, name) for alert in mde] == [getattr(alert, name) for alert in graph], name


def test_an_endpoint_that_refuses_evidence_still_gives_its_alerts_and_says_so(clean_simulator):
    settings = settings_for(clean_simulator)
    before = alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    clean_simulator.faults.set(refuse_expand_on_machine_alerts=True)
    after = alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    assert [alert.id for alert in after.alerts] == [alert.id for alert in before.alerts]
    assert all(alert.evidence == () for alert in after.alerts)
    assert after.message.endswith("Defender refused to send their evidence ($expand=evidence), so none is shown.")


def test_an_actor_entered_by_ip_address_is_found_by_its_last_ip(clean_simulator):
    machine = clean_simulator.data.machine_by_name("ws-fin-07.corp.contoso.com")
    settings = settings_for(clean_simulator)
    by_name = alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    by_ip = alerts_for_actor(settings, [machine["lastIpAddress"]], *_month(None))
    assert [alert.id for alert in by_ip.alerts] == [alert.id for alert in by_name.alerts]
    assert {alert.matched_name for alert in by_ip.alerts} == {machine["lastIpAddress"]}
    assert not any("computerDnsName+eq" in record.query for record in clean_simulator.requests)


@pytest.mark.parametrize("flavour", [presets.GRAPH, presets.SIEM])
def test_an_actor_entered_by_ip_address_is_found_on_graph_and_siem_by_the_devices_addresses(simulator, flavour):
    address = simulator.data.machine_by_name("ws-fin-07.corp.contoso.com")["lastIpAddress"]
    settings = settings_for(simulator, flavour)
    by_name = alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    by_ip = alerts_for_actor(settings, [address], *_month(None))
    assert [alert.id for alert in by_ip.alerts] == [alert.id for alert in by_name.alerts] and by_ip.alerts
    assert {alert.machine_name for alert in by_ip.alerts} == {"ws-fin-07.corp.contoso.com"}


def test_an_ip_address_that_is_no_machines_last_ip_is_looked_up_with_findbyip(clean_simulator):
    alerts_for_actor(settings_for(clean_simulator), ["192.0.2.1"])
    paths = [(record.path, record.status) for record in clean_simulator.requests if record.kind == "api"]
    assert paths[0] == ("/api/v1.0/machines", 200)
    assert paths[1][0].startswith("/api/v1.0/machines/findbyip(ip='192.0.2.1',timestamp=") and paths[1][1] == 200
    assert len(paths) == 2


def test_an_ip_address_no_machine_had_says_it_was_searched_as_one(simulator):
    result = alerts_for_actor(settings_for(simulator), ["192.0.2.1", "ws-x"])
    assert result.message == (
        "No machine named 192.0.2.1 or ws-x is known to Defender (searched computer names ws-x*; IP address 192.0.2.1)."
    )


def test_graph_is_narrowed_to_defender_for_endpoint_at_the_server_within_its_page_limit(clean_simulator):
    settings = settings_for(clean_simulator, presets.GRAPH, page_size=5000)
    alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    query = next(record.query for record in clean_simulator.requests if record.path.endswith("/alerts_v2"))
    assert "serviceSource+eq+%27microsoftDefenderForEndpoint%27" in query and "%24top=1000" in query
    assert "%24skip" not in query


def test_graph_is_asked_for_the_enum_members_added_after_v1_0(clean_simulator):
    settings = settings_for(clean_simulator, presets.GRAPH)
    alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    graph_calls = [record for record in clean_simulator.requests if record.path.endswith("/alerts_v2")]
    assert graph_calls and {record.prefer for record in graph_calls} == {"include-unknown-enum-members"}


def test_the_defender_api_is_sent_no_prefer_header(clean_simulator):
    alerts_for_actor(settings_for(clean_simulator, presets.MDE), ["ws-fin-07"], *_month(None))
    assert {record.prefer for record in clean_simulator.requests if record.kind == "api"} == {""}


def test_graph_with_all_products_is_not_narrowed_to_defender_for_endpoint(clean_simulator):
    settings = dataclasses.replace(settings_for(clean_simulator, presets.GRAPH), graph_all_products=True)
    alerts_for_actor(settings, ["ws-fin-07"], *_month(None))
    query = next(record.query for record in clean_simulator.requests if record.path.endswith("/alerts_v2"))
    assert "serviceSource" not in query


def test_graph_email_alerts_of_all_products_are_not_counted_as_on_other_machines(simulator):
    settings = dataclasses.replace(settings_for(simulator, presets.GRAPH), graph_all_products=True)
    result = alerts_for_actor(settings, ["ws-nowhere"], *_month(None))
    emails = len(simulator.data.email_alerts)
    assert result.message == (
        f"No alerts on ws-nowhere in that window ({len(simulator.alerts)} alerts in that window were on other "
        f"machines). {emails} alerts in that window were not about a machine."
    )


def test_graph_throttling_quotes_graphs_own_limit(clean_simulator):
    clean_simulator.faults.set(throttle_every=1, retry_after=120)
    with pytest.raises(Throttled) as failure:
        alerts_for_actor(settings_for(clean_simulator, presets.GRAPH), ["ws-fin-07"])
    assert "150 requests a minute per app and tenant for security alerts" in str(failure.value)


def test_an_alert_with_its_evidence_travels_as_plain_fields_and_comes_back_equal(simulator):
    for flavour in FLAVOURS:
        found = alerts_for_actor(settings_for(simulator, flavour), ["ws-fin-07"], *_month(None)).alerts
        assert [alerts.alert_from_fields(alerts.alert_to_fields(alert)) for alert in found] == found


def test_alert_from_fields_reads_the_new_fields_as_untrusted():
    alert = alerts.alert_from_fields(
        {"id": "da1", "incident_id": {"x": 1}, "threat_name": "T" * 999, "evidence": [{"file_name": ["x"]}, "odd"]}
    )
    assert (alert.incident_id, len(alert.threat_name)) == ("", alerts.NAME_LENGTH)
    assert alert.evidence == (alerts.Evidence(),)
    assert alerts.alert_from_fields({"id": "da2"}).evidence == ()
