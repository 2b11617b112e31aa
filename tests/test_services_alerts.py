"""Alerts for an actor against the simulator: machine matching, windows, three flavours, paging and faults."""

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from defender import presets
from defender.services import alerts
from defender.services.alerts import Window, alerts_for_actor, describe_window, same_host
from defender.services.errors import BadResponse, PermissionMissing
from tests.fixtures.connection import settings_for

MONTH = timedelta(days=31)


def _expected_ids(simulator, machine, since, until):
    """Ids of the seed alerts on machine raised within [since, until], newest first."""
    chosen = [
        alert
        for alert in simulator.alerts
        if alert["computerDnsName"] == machine and since <= datetime.fromisoformat(alert["alertCreationTime"]) <= until
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
