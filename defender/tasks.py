"""Celery tasks: thin wrappers over the use cases in ``defender.operations``. Each takes ids (never a secret), and
each is safe to run twice: a worker killed mid-way has its task run again by another worker (late acknowledgement),
and what a task stores is stored once."""

from celery import shared_task

from defender.operations import alerts, answers, checks


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
