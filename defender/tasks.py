"""Celery tasks: thin wrappers over the use cases in ``defender.operations``. Each takes ids (never a secret), and
each is safe to run twice: a worker killed mid-way has its task run again by another worker (late acknowledgement),
and what a task stores is stored once."""

import logging

from celery import shared_task

from defender.models import Execution, Integration, TestRun
from defender.operations import alerts, answers, checks, health, outcomes, sync

logger = logging.getLogger(__name__)


@shared_task
def run_test(run_id: int) -> None:
    """Run a Test run's steps, recording each as it finishes."""
    checks.execute_run(run_id)


@shared_task
def get_alerts(job_id: int) -> None:
    """Ask a Local integration for an actor's alerts and store them: the job the actor's page waits on."""
    alerts.run_job_here(job_id)


@shared_task
def remote_job_housekeeping() -> None:
    """End the jobs whose time is up and return to the queue those whose node went silent (periodic)."""
    answers.housekeeping()


@shared_task
def scheduled_test(integration_id: int) -> None:
    """The scheduled health check: a Test like the pressed one (on its node when the integration is Remote). A
    disabled integration is not tested; a deleted one loses its schedule."""
    integration = Integration.objects.select_related("proxy_rule", "remote_node").filter(pk=integration_id).first()
    if integration is None:
        health.forget_schedule(integration_id)
    elif integration.enabled:
        checks.start_integration_test(integration, trigger=TestRun.Trigger.SCHEDULED)


@shared_task
def notify_health(integration_id: int, event: str) -> None:
    """Tell the integration's email addresses and webhook that it went down ("down") or recovered ("up")."""
    health.notify_health(integration_id, event)


@shared_task(soft_time_limit=sync.TIME_LIMIT_SECONDS, time_limit=sync.HARD_TIME_LIMIT_SECONDS)
def sync_alerts(integration_id: int | None = None) -> None:
    """The periodic alert sweep of one integration (or, without an id, of every enabled one, each on its own: one
    that fails never stops the next). A deleted integration loses its schedule."""
    if integration_id is None:
        chosen = sync.sweepable()
    else:
        chosen = list(Integration.objects.select_related("proxy_rule", "remote_node").filter(pk=integration_id))
        if not chosen:
            sync.forget_schedule(integration_id)
    for integration in chosen:
        summary = sync.sync_integration(integration)
        logger.info("%s", summary.text())


@shared_task
def evaluate_outcomes(execution_id: int | None = None) -> None:
    """Evaluate one execution's procedures, or (periodic, without an id) every execution still Pending."""
    if execution_id is None:
        outcomes.evaluate_pending()
        return
    execution = Execution.objects.select_related("actor").filter(pk=execution_id).first()
    if execution is not None:  # deleted since it was queued: nothing to do
        outcomes.evaluate_execution(execution)
