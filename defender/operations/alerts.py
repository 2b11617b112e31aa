"""Pressing Get alerts on an actor: ask the chosen integrations (here, or through their remote node) and store what
each answered."""

from datetime import datetime

from django.utils import timezone

from defender import alert_store
from defender.models import Actor, Integration, Job
from defender.operations.placement import runs_on_node
from defender.remote import jobs, wire

UNREADABLE = "The remote node's answer could not be read; update its agent."


def get_alerts(actor: Actor, integrations: list[Integration], since: datetime, until: datetime, user=None) -> list[Job]:
    """Ask the Local integrations now (their answers are stored when this returns) and queue the Remote ones for
    their nodes (the actor's page waits for those). Returns the queued jobs."""
    local = [integration for integration in integrations if not runs_on_node(integration)]
    if local:
        alert_store.fetch_alerts(actor, local, since, until)
    return [
        jobs.enqueue_alerts(actor, integration, since, until, user)
        for integration in integrations
        if runs_on_node(integration)
    ]


def record_remote_alerts(job: Job) -> None:
    """Store the alerts a remote node answered for the actor, or its failure, like a local Get alerts would."""
    actor = Actor.objects.filter(pk=job.parameters.get("actor_id")).first()
    if actor is None:
        return  # the actor was deleted while its alerts were being fetched
    # The window as asked; the node widened it by the integration's clock-skew tolerance when it asked Defender.
    since, until = (datetime.fromisoformat(job.parameters[key]) for key in ("since", "until"))
    found = None
    if job.state == Job.State.DONE and job.result:
        try:
            found = wire.alerts_result_from_wire(job.result)
        except ValueError:
            _fail(job, UNREADABLE)
    if found is not None:
        outcome = alert_store.Outcome(
            job.integration, True, found.message, since, until, found.tried_names, tuple(found.alerts)
        )
    else:
        outcome = alert_store.Outcome(
            job.integration, False, job.error or UNREADABLE, since, until, tuple(job.parameters.get("hostnames", ()))
        )
    fetch = alert_store.record_outcome(actor, outcome, timezone.now())
    if job.state == Job.State.DONE and not fetch.ok:
        # The answer arrived but could not be stored: the job ends now with the reason, rather than staying
        # "running" until its lease sends it round again to the same result.
        _fail(job, fetch.message)


def _fail(job, message):
    """End a job whose node answered "done" as failed instead; called inside the transaction that records it."""
    Job.objects.filter(pk=job.pk).update(state=Job.State.FAILED, error=message)
    job.state, job.error = Job.State.FAILED, message
