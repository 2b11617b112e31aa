"""Celery tasks: thin wrappers over the use cases in ``defender.operations``. Each takes ids (never a secret), and
each is safe to run twice: a worker killed mid-way has its task run again by another worker (late acknowledgement),
and what a task stores is stored once."""

from celery import shared_task

from defender.models import Integration, TestRun
from defender.operations import alerts, answers, checks, health


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
