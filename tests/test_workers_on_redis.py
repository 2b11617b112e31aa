"""The engine with real `celery -A integrations_site worker` processes on the machine's Redis (database 5): a Test
pressed on the site is run by a worker, and a worker killed in the middle of a task has that task run again by
another worker, its result stored once.

The workers use the suite's test database (committed rows: transactional_db) and the session's simulator.
"""

import pytest
from django.urls import reverse

from defender.models import Alert, AlertFetch, Job, TestRun
from defender.services.steps import PASSED
from tests.engine_processes import (
    Process,
    environment,
    redis_or_skip,
    running,
    site_sends_to_redis,
    wait_until,
    worker_command,
)
from tests.factories import make_actor, simulator_integration

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def redis_engine(transactional_db, settings):
    """Redis db 5, emptied, and this process's site queueing to it as the site does (no inline tasks here)."""
    redis_or_skip()
    settings.TASKS_RUN_INLINE = False
    with site_sends_to_redis():
        yield


def start_worker(name, tmp_path):
    return Process(name, worker_command(name), environment(tmp_path), tmp_path)


def test_a_test_pressed_on_the_site_is_run_by_a_worker_and_its_steps_stored(
    redis_engine, admin_client, simulator, tmp_path
):
    integration = simulator_integration(simulator)
    with running(start_worker("worker-one", tmp_path)):
        response = admin_client.post(reverse("defender:integration-test", args=[integration.pk]))
        assert response.status_code == 303
        run = TestRun.objects.get(integration=integration)

        wait_until(lambda: TestRun.objects.get(pk=run.pk).finished, what="the Test run finished")

    run.refresh_from_db()
    integration.refresh_from_db()
    assert [step["outcome"] for step in run.steps] == [PASSED] * len(run.steps)
    assert len(run.steps) >= 5  # DNS, TCP, TLS, token, permissions, the API call
    assert integration.last_test_ok is True
    assert [step["name"] for step in integration.last_test_steps] == [step["name"] for step in run.steps]


def test_a_worker_killed_mid_task_has_its_task_run_again_by_another_and_stored_once(
    redis_engine, admin_client, clean_simulator, tmp_path
):
    simulator = clean_simulator
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = make_actor(hostname=hostname, alternate_hostname=alternate)
    integration = simulator_integration(simulator, read_timeout=120.0)
    # Every API call waits two minutes: the first worker is sure to be in the middle of the task when it is killed.
    simulator.faults.set(delay=120)
    first = start_worker("worker-one", tmp_path)
    with running(first):
        response = admin_client.post(
            reverse("defender:actor-get-alerts", args=[actor.pk]), {"integrations": [integration.pk], "window": "30d"}
        )
        assert response.status_code == 302
        job = Job.objects.get(integration=integration, kind=Job.Kind.ALERTS)
        # The worker has taken the job (it is RUNNING, attempt 1) and is waiting for Defender's answer: kill it.
        wait_until(lambda: Job.objects.filter(pk=job.pk, state=Job.State.RUNNING).exists(), what="job running")
        first.kill()
        job.refresh_from_db()
        assert (job.state, job.attempts) == (Job.State.RUNNING, 1)
        simulator.faults.set(delay=0)

        second = start_worker("worker-two", tmp_path)
        with running(second):
            # Redis gives the unacknowledged task to the second worker once its visibility timeout has passed.
            wait_until(lambda: Job.objects.get(pk=job.pk).finished, timeout=180, what="the job ended")

    job.refresh_from_db()
    assert (job.state, job.attempts) == (Job.State.DONE, 2), job.error
    [fetch] = AlertFetch.objects.filter(actor=actor, integration=integration)
    assert fetch.ok, fetch.message
    assert Alert.objects.filter(actor=actor).count() == fetch.alert_count > 0
    assert "worker-two" in second.log and "defender.tasks.get_alerts" in second.log
