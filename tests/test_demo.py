"""The demo is the product's front door: its seeded integration must pass the Test and find alerts for each actor."""

import pytest

from defender.demo import seed_demo
from defender.models import Actor, Integration
from defender.services.alerts import alerts_for_actor
from defender.services.connectivity import run_test

pytestmark = pytest.mark.django_db


def test_seeded_integration_passes_every_test_step(simulator):
    integration = seed_demo(simulator)
    result = run_test(integration.to_settings())
    assert [step.outcome for step in result.steps] == ["passed"] * len(result.steps), result.summary


def test_every_seeded_actor_has_alerts_including_the_one_known_by_its_alternate_name(simulator):
    integration = seed_demo(simulator)
    actors = list(Actor.objects.all())
    assert len(actors) == 3
    assert any(actor.alternate_hostname for actor in actors)
    for actor in actors:
        found = alerts_for_actor(integration.to_settings(), actor.hostnames())
        assert found.alerts, f"{actor.name} ({actor.hostnames()}): {found.message}"
    kiosk = next(actor for actor in actors if actor.alternate_hostname)
    kiosk_alerts = alerts_for_actor(integration.to_settings(), kiosk.hostnames()).alerts
    assert {alert.matched_name for alert in kiosk_alerts} == {kiosk.alternate_hostname}


def test_seeding_twice_keeps_one_integration_and_three_actors(simulator):
    seed_demo(simulator)
    seed_demo(simulator)
    assert Integration.objects.count() == 1
    assert Actor.objects.count() == 3


def test_the_demo_execution_shows_every_outcome(tmp_path):
    from defender.demo import DEMO_EXECUTION_ID, seed_demo_execution
    from defender.models import Execution
    from defender.simulator import Simulator

    # A simulator of its own: the demo tells it procedures ran, which adds alerts the shared one must not have.
    with Simulator(seed=1, ca_path=tmp_path / "ca.pem") as sim:
        integration = seed_demo(sim)
        execution = seed_demo_execution(sim, integration)
        again = seed_demo_execution(sim, integration)

    assert again == execution and Execution.objects.filter(external_id=DEMO_EXECUTION_ID).count() == 1
    assert execution.actor.name == "Finance workstation"
    outcomes = dict(execution.procedures.values_list("technique_id", "outcome"))
    assert outcomes == {"T1003.001": "prevented", "T1059.001": "alerted", "T1016": "detected", "T1046": "missed"}
