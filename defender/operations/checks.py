"""Pressing Test: start a Test run of a saved integration, of typed values or of a proxy rule, record its steps as each
finishes, and record what they came to (on the integration, like its last Test).

A local run's steps are run by a worker (``tasks.run_test``, through ``background.submit``) while its page polls the
run; a Remote integration's run waits for its node's answer to a job. Where it runs is decided by ``placement`` only.
A run of typed values keeps their settings encrypted until its worker has run them: the broker carries only the run's
id.
"""

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from defender.destinations import REFUSED_SECRETS
from defender.models import Integration, Job, ProxyRule, TestRun
from defender.operations import answers, background
from defender.operations.placement import runs_on_node
from defender.operations.records import REMOTE_STEP, finish_run, record_test_result, stored_steps
from defender.remote import jobs, wire
from defender.services import budget, proxy_check
from defender.services.connectivity import iter_test_steps
from defender.services.steps import FAILED, NOT_TESTED, SKIPPED, Step, StepOutcome, TestResult

logger = logging.getLogger(__name__)

Requester = AbstractBaseUser | AnonymousUser | None
StepRunner = Callable[..., Iterator[Step]]


class RunNotFinished(Exception):
    """A run that cannot finish while someone waits for it; the message says why and what to do."""


def steps_for(build_settings: Callable[[], Any], run: StepRunner = iter_test_steps) -> Iterator[Step]:
    """The Test's steps (``run`` of the settings ``build_settings()`` makes); a stored secret that cannot be sent is a
    failed first step saying why, not an error page, and nothing is sent anywhere."""
    try:
        settings = build_settings()
    except REFUSED_SECRETS as error:
        return iter([Step("Stored secret", FAILED, 0, str(error))])
    return run(settings)


# --- starting a run -------------------------------------------------------------------------------------------------


def start_integration_test(
    integration: Integration, user: Requester = None, trigger: str = TestRun.Trigger.PRESSED
) -> TestRun:
    """Test a saved integration here (by a worker) or on its remote node; either way the outcome becomes its last
    Test."""
    run = _new_run(TestRun.Subject.INTEGRATION, integration.name, user, integration=integration, trigger=trigger)
    if runs_on_node(integration):
        # Queued for the node; the run's page polls it: no worker waits here for the node to check in.
        run.job = jobs.enqueue(integration, Job.Kind.TEST, user=_saved(user))
        run.save(update_fields=["job"])
    else:
        _run_here(run, integration, in_this_process=trigger == TestRun.Trigger.COMMAND)
    return run


def start_typed_test(
    integration: Integration, build_settings: Callable[[], Any], values_digest: str, user: Requester = None
) -> TestRun:
    """Test the values typed on a form, before anything is saved. The settings, secret included, live only in memory
    while the steps run; the run keeps a keyed digest of the values, so that Submit can record it."""
    run = _new_run(TestRun.Subject.TYPED_VALUES, integration.name, user, values_digest=values_digest)
    if runs_on_node(integration):
        # The node runs saved integrations only: their settings, secret included, are sent when it claims a job.
        message = (
            f"Submit, then press Test: the Test of a Remote integration runs on node {integration.remote_node}, which "
            "takes only saved integrations."
        )
        finish_run(run, TestResult((Step(REMOTE_STEP, SKIPPED, 0, message),)))
        return run
    try:
        settings = build_settings()
    except REFUSED_SECRETS as error:
        finish_run(run, TestResult((Step("Stored secret", FAILED, 0, str(error)),)))
        return run
    # Kept encrypted on the run for its worker, emptied when it ends: the secret never passes through the broker.
    run.typed_settings = json.dumps(wire.settings_to_wire(settings))
    run.save(update_fields=["typed_settings"])
    _run_here(run, integration)
    return run


def start_proxy_rule_test(rule: ProxyRule, user: Requester = None) -> TestRun:
    """Does the proxy answer, accept its credentials and open a tunnel to where its integrations go? Nothing else is
    stored."""
    run = _new_run(TestRun.Subject.PROXY_RULE, f"proxy rule {rule.name}", user, proxy_rule=rule)
    _run_here(run, None)
    return run


def _new_run(subject: str, title: str, user: Requester, **fields: Any) -> TestRun:
    return TestRun.objects.create(subject=subject, title=title, requested_by=_saved(user), **fields)


def _saved(user: Requester) -> Any:
    """The user to name as the one who asked: nobody for a command, or a request without a login."""
    return user if user is not None and user.is_authenticated else None


def _run_here(run: TestRun, integration: Integration | None, *, in_this_process: bool = False) -> None:
    from defender import tasks  # the tasks call this module

    limit = time_limit_seconds(integration)
    background.submit(tasks.run_test, run.pk, time_limit=limit, in_this_process=in_this_process)
    run.refresh_from_db()  # as it stands now: finished already when it ran inline


def time_limit_seconds(integration: Integration | None) -> float:
    """How long a worker lets a Test run: the most its timeouts allow, and a margin (defaults when there is no
    integration: a proxy rule's Test)."""
    connect, read = (5.0, 30.0) if integration is None else (integration.connect_timeout, integration.read_timeout)
    return wire.test_time_bound(connect, read) + jobs.ANSWER_MARGIN_SECONDS


def execute_run(run_id: int) -> None:
    """Run a Test run's steps, writing the run's list after each one, then record what they came to. Run by a
    worker; safe to run again (a worker lost mid-way): a finished run is left alone, an unfinished one starts over."""
    run = TestRun.objects.select_related("integration__proxy_rule", "proxy_rule").filter(pk=run_id).first()
    if run is None or run.finished:
        return  # deleted meanwhile (with what it tested), or run already
    done: list[Step] = []
    # A scheduled health check is background work: it keeps within its share of the call budget and lets a Test or
    # Get alerts pressed by a person go first.
    scheduled = run.trigger == TestRun.Trigger.SCHEDULED
    try:
        with budget.background() if scheduled else contextlib.nullcontext():
            for step in _steps_of(run):
                done.append(step)
                TestRun.objects.filter(pk=run_id, finished_at=None).update(steps=stored_steps(done))
    except SoftTimeLimitExceeded:
        message = "The Test did not finish in the time its timeouts allow. Try again; if it persists, raise them."
        done.append(Step("Time limit", FAILED, 0, message))
    except Exception:
        # The step runner explains every failure it expects; anything else must still end the run.
        logger.exception("Test run %s broke", run_id)
        done.append(Step("Unexpected error", FAILED, 0, "The Test stopped unexpectedly; the site's log has details."))
    result = TestResult(tuple(done))
    with transaction.atomic():
        run = TestRun.objects.select_for_update(of=("self",)).select_related("integration").filter(pk=run_id).first()
        if run is None or run.finished:
            return
        if run.subject == TestRun.Subject.INTEGRATION and run.integration is not None:
            record_test_result(run.integration, result)
        finish_run(run, result)


def _steps_of(run: TestRun) -> Iterator[Step]:
    if run.subject == TestRun.Subject.PROXY_RULE:
        rule = run.proxy_rule
        if rule is None:
            return iter(())
        targets = rule.tunnel_targets()  # type: ignore[no-untyped-call]
        return steps_for(rule.to_settings, run=partial(proxy_check.iter_proxy_steps, targets=targets))
    if run.subject == TestRun.Subject.TYPED_VALUES:
        typed = str(run.typed_settings)
        if not typed:
            message = "The typed values were no longer kept: press Test again."
            return iter([Step("Typed values", FAILED, 0, message)])
        return steps_for(lambda: wire.settings_from_wire(json.loads(typed)))
    assert run.integration is not None
    return steps_for(run.integration.to_settings)


# --- reading a run --------------------------------------------------------------------------------------------------


def result_of(run: TestRun) -> TestResult:
    """The steps recorded so far, as the step runner's result."""
    return TestResult(tuple(_step(data) for data in run.steps))


def _step(data: dict[str, Any]) -> Step:
    return Step(str(data["name"]), StepOutcome(data["outcome"]), int(data["duration_ms"]), str(data["message"]))


def refreshed_run(run_id: int) -> TestRun:
    """The run as it stands now. A cancelled job ends its run without touching the integration's last Test (a job
    past its deadline is ended by the periodic housekeeping, which ends its run). Raises TestRun.DoesNotExist."""
    related = ("integration", "job__integration__remote_node", "job__node")
    run = TestRun.objects.select_related(*related).get(pk=run_id)
    if run.job is None or run.finished:
        return run
    if not run.finished and run.cancelled and run.job is not None:
        finish_run(run, TestResult(()), summary=run.job.error)
    return run


def typed_result_to_record(run_id: object, values_digest: str) -> TestResult | None:
    """What Submit records for the values it saves: the finished Test run of exactly those values, unless it tested
    nothing."""
    if not isinstance(run_id, int):
        return None
    run = TestRun.objects.filter(pk=run_id, subject=TestRun.Subject.TYPED_VALUES, values_digest=values_digest).first()
    if run is None or not run.finished:
        return None
    result = result_of(run)
    return None if result.verdict == NOT_TESTED else result


def wait_for(run: TestRun, timeout: float, on_step: Callable[[Step], None], poll_seconds: float = 0.2) -> TestRun:
    """Wait until the run is finished, handing each step to ``on_step`` as it is recorded. Raises RunNotFinished,
    saying why and what to do, when no node can take its job or none answered within ``timeout`` (the job is then
    withdrawn, as for Get alerts: nobody waits for its answer any more)."""
    if run.job is not None and (problem := answers.node_unavailable(run.job.integration)):
        answers.give_up(run.job, 0)
        raise RunNotFinished(problem)
    give_up = time.monotonic() + timeout
    shown = 0
    while True:
        if run.job is not None:
            answers.housekeeping()
        run = refreshed_run(run.pk)
        for data in run.steps[shown:]:
            on_step(_step(data))
        shown = len(run.steps)
        if run.finished:
            return run
        if time.monotonic() >= give_up:
            if run.job is None:
                raise RunNotFinished(
                    f"The Test did not finish within {timeout:g} s: see the site's log, then try again."
                )
            why = answers.give_up(run.job, timeout)
            if why is None:  # it ended meanwhile: its answer counts
                continue
            raise RunNotFinished(f"{why} Wait longer with --timeout SECONDS.")
        time.sleep(poll_seconds)


def wait_seconds(integration: Integration) -> float:
    """Long enough for a node to claim the job and answer it: the claim deadline plus the Test's own time bound."""
    bound: float = jobs.deadline_seconds() + jobs.answer_bound_seconds(integration)
    return bound
