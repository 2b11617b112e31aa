"""What the site does with a remote job's outcome: the same records a local Test or Get alerts leaves."""

from datetime import datetime

from django.utils import timezone

from defender import alert_store
from defender.models import Actor, Job
from defender.remote import wire
from defender.services.steps import FAILED, Step, TestResult
from defender.testing import record_test_result

REMOTE_STEP = "Remote node"
UNREADABLE = "The remote node's answer could not be read; update its agent."


def test_result_of(job):
    """The Test's steps as the node reported them; a job that never ran is one failed "Remote node" step."""
    if job.result and job.result.get("steps"):
        return wire.test_result_from_wire(job.result)
    return TestResult((Step(REMOTE_STEP, FAILED, 0, job.error or "The remote node could not run the Test."),))


def apply_result(job):
    if job.kind == Job.Kind.TEST:
        record_test_result(job.integration, test_result_of(job))
    elif job.kind == Job.Kind.ALERTS:
        _store_alerts(job)


def _store_alerts(job):
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
