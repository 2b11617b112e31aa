"""What the site does with a remote job's outcome: the same records a local Test or Get alerts leaves."""

from datetime import datetime

from django.utils import timezone

from defender import alert_store
from defender.models import Actor, Job
from defender.remote import wire
from defender.services.connectivity import FAILED, Step, TestResult
from defender.testing import record_test_result

REMOTE_STEP = "Remote node"


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
    if job.state == Job.State.DONE and job.result:
        found = wire.alerts_result_from_wire(job.result)
        outcome = alert_store.Outcome(
            job.integration, True, found.message, since, until, found.tried_names, tuple(found.alerts)
        )
    else:
        outcome = alert_store.Outcome(
            job.integration, False, job.error, since, until, tuple(job.parameters.get("hostnames", ()))
        )
    alert_store.record_outcome(actor, outcome, timezone.now())
