"""Get alerts asks each chosen integration from this site, side by side, and one failing never stops the others.

The simulator runs on a real socket (tests.fixtures.simulator).
"""

from datetime import timedelta

import pytest
from django.db import connection

from defender.models import Alert, AlertFetch, Integration
from defender.operations import alerts as operations_alerts
from tests.factories import make_actor, make_integration, simulator_integration
from tests.test_alert_store import last_30_days


def not_secret_in(fetches, secret):
    return all(secret not in fetch.message for fetch in fetches)


@pytest.mark.django_db
def test_get_alerts_stores_the_rows_defender_answered(simulator):
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = make_actor(hostname=hostname, alternate_hostname=alternate)
    integration = simulator_integration(simulator)

    [fetch] = operations_alerts.fetch_alerts(actor, [integration], *last_30_days())

    assert fetch.ok, fetch.message
    stored = Alert.objects.filter(actor=actor, integrations=integration)
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
    assert Alert.objects.filter(integrations=working).count() == fetches[0].alert_count > 0
    assert not Alert.objects.filter(integrations__in=[wrong_secret, closed]).exists()


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
