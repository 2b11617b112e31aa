"""Pressing Test: run the steps of a saved integration or of typed values, and record what they came to."""

from collections.abc import Callable, Iterator
from dataclasses import asdict

from django.utils import timezone

from defender.destinations import REFUSED_SECRETS
from defender.models import Integration, Job
from defender.remote import wire
from defender.services.connectivity import iter_test_steps
from defender.services.steps import FAILED, Step, TestResult

REMOTE_STEP = "Remote node"


def steps_for(build_settings, run: Callable[..., Iterator[Step]] = iter_test_steps) -> Iterator[Step]:
    """The Test's steps (``run`` of the settings ``build_settings()`` makes); a stored secret that cannot be sent is a
    failed first step saying why, not an error page, and nothing is sent anywhere."""
    try:
        settings = build_settings()
    except REFUSED_SECRETS as error:
        return iter([Step("Stored secret", FAILED, 0, str(error))])
    return run(settings)


def record_test_result(integration: Integration, result: TestResult) -> None:
    """Store when the Test ran, whether it passed, a one-line summary and the steps; the edit timestamps stay as they
    were."""
    integration.last_test_at = timezone.now()
    integration.last_test_ok = result.ok
    integration.last_test_summary = result.summary
    integration.last_test_steps = [asdict(step) for step in result.steps]
    integration.save(update_fields=["last_test_at", "last_test_ok", "last_test_summary", "last_test_steps"])


def remote_test_result(job: Job) -> TestResult:
    """The Test's steps as the node reported them; a job that never ran is one failed "Remote node" step."""
    if job.result and job.result.get("steps"):
        return wire.test_result_from_wire(job.result)
    return TestResult((Step(REMOTE_STEP, FAILED, 0, job.error or "The remote node could not run the Test."),))


def record_remote_test(job: Job) -> None:
    record_test_result(job.integration, remote_test_result(job))
