"""What a Test or a Get alerts came to, recorded where the pages read it: the integration's last Test, the Test run,
the actor's alerts. Local runs and remote nodes' answers leave the same records."""

from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.utils import timezone

from defender import alert_store
from defender.models import Actor, Integration, Job, TestRun
from defender.operations import health
from defender.remote import jobs, wire
from defender.services.steps import FAILED, Step, TestResult

REMOTE_STEP = "Remote node"
UNREADABLE = "The remote node's answer could not be read; update its agent."


def record_test_result(integration: Integration, result: TestResult) -> None:
    """Store when the Test ran, whether it passed, a one-line summary and the steps; the edit timestamps stay as they
    were. Every Test of a saved integration ends here, so here it counts towards the integration's health."""

    record = {
        "last_test_at": timezone.now(),
        "last_test_ok": result.ok,
        "last_test_summary": result.summary,
        "last_test_steps": stored_steps(result.steps),
    }
    Integration.objects.filter(pk=integration.pk).update(**record)
    for field, value in record.items():
        setattr(integration, field, value)
    health.after_test(integration, result)


def remote_test_result(job: Job) -> TestResult:
    """The Test's steps as the node reported them; a job that never ran is one failed "Remote node" step."""
    if job.result and job.result.get("steps"):
        result: TestResult = wire.test_result_from_wire(job.result)
        return result
    return TestResult((Step(REMOTE_STEP, FAILED, 0, job.error or "The remote node could not run the Test."),))


def record_remote_test(job: Job) -> None:
    """A node's answer (or its job's failure) is the integration's last Test and the end of the run that waited."""
    result = remote_test_result(job)
    record_test_result(job.integration, result)
    run = TestRun.objects.filter(job=job).first()
    if run is not None:
        finish_run(run, result)


def finish_run(run: TestRun, result: TestResult, *, summary: str | None = None) -> None:
    run.steps = stored_steps(result.steps)
    run.verdict = str(result.verdict) if summary is None else ""
    run.summary = result.summary if summary is None else summary
    run.finished_at = timezone.now()
    run.typed_settings = ""  # the typed values' secret is kept no longer than their Test runs
    run.save(update_fields=["steps", "verdict", "summary", "finished_at", "typed_settings"])


def stored_steps(steps: Iterable[Step]) -> list[dict[str, Any]]:
    return [asdict(step) for step in steps]


def record(job: Job) -> None:
    """Record an ended job as the local path would: the Test on its integration, the alerts for the actor."""
    if job.kind == Job.Kind.TEST:
        record_remote_test(job)
    elif job.kind == Job.Kind.ALERTS:
        record_remote_alerts(job)


def remote_outcome(job: Job) -> alert_store.Outcome:
    """What a node answered to Get alerts, as a local ask's Outcome: its alerts, or its failure."""
    # The window as asked; the node widened it by the integration's clock-skew tolerance when it asked Defender.
    since, until = (datetime.fromisoformat(job.parameters[key]) for key in ("since", "until"))
    names = tuple(job.parameters.get("hostnames", ()))
    if job.state == Job.State.DONE and job.result:
        try:
            found = wire.alerts_result_from_wire(job.result)
        except ValueError:
            return alert_store.Outcome(job.integration, False, UNREADABLE, since, until, names)
        return alert_store.Outcome(
            job.integration, True, found.message, since, until, found.tried_names, tuple(found.alerts)
        )
    return alert_store.Outcome(job.integration, False, job.error or UNREADABLE, since, until, names)


def record_remote_alerts(job: Job) -> None:
    """Store the alerts a remote node answered for the actor, or its failure, like a local Get alerts would."""
    outcome = remote_outcome(job)
    actor = Actor.objects.filter(pk=job.parameters.get("actor_id")).first()
    fetch_ok, message = outcome.ok, outcome.message
    if actor is not None:  # None: the actor was deleted meanwhile, or the command asked for a bare hostname
        fetch = alert_store.record_outcome(actor, outcome, timezone.now())
        fetch_ok, message = fetch.ok, fetch.message
    if job.state == Job.State.DONE and not fetch_ok:
        # The answer arrived but could not be read or stored: the job ends now with the reason, rather than staying
        # "running" until its lease sends it round again to the same result.
        jobs.end(jobs.Ending(job, Job.State.DONE, Job.State.FAILED, message, job.result))
