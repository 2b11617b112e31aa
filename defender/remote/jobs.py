"""The site's queue of remote jobs, as a state machine: enqueue, claim atomically, lease, release, withdraw and end.

Every move is a conditional UPDATE that only one caller can win. Claiming is atomic: on PostgreSQL with SELECT ...
FOR UPDATE SKIP LOCKED (agents polling at once each get a different job without waiting on each other); elsewhere
with a conditional UPDATE that only one agent can win. A job whose node took it and went silent returns to the queue
when its lease ends; a job nobody claims by its deadline expires; a Test that has no answer by the time its timeouts
allow (plus a margin) fails, since a live node always answers by then.

An agent process says, each time it checks in, which jobs it holds (none: it runs one at a time and checks in between),
so a claim whose answer never reached it (lost on the way, or cut short as it stopped) goes straight back to the queue.

What an ended job means (a Test recorded on its integration, alerts stored for an actor) is not this module's: the use
cases take an ``Ending`` through ``end`` in the same transaction as its records (``defender.operations.answers``).
"""

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.formats import date_format

from defender.models import Actor, Integration, Job, RemoteNode
from defender.remote import wire

logger = logging.getLogger(__name__)


# A job whose node went silent this many times fails instead of going round again.
MAX_ATTEMPTS = 3
# Added to a Test's own time bound for the job's trip to the node and the answer's trip back (with its retries).
ANSWER_MARGIN_SECONDS = 30
UNFINISHED = (Job.State.QUEUED, Job.State.RUNNING)


def deadline_seconds() -> int:
    return int(settings.REMOTE_JOB_DEADLINE_SECONDS)


def lease_seconds() -> int:
    return int(settings.REMOTE_JOB_LEASE_SECONDS)


@dataclass(frozen=True)
class Claim:
    """What identifies one claim of a job: a later claim (after a re-queue) is not touched by a change to this one."""

    node_id: int | None
    attempts: int


@dataclass(frozen=True)
class Ending:
    """A job's move to an end state, taken only if it is still ``expected`` (and, with a claim, still that claim)."""

    job: Job
    expected: str
    state: str
    error: str = ""
    result: Any = None
    claim: Claim | None = None


def enqueue(
    integration: Integration,
    kind: str,
    parameters: dict[str, Any] | None = None,
    user: User | None = None,
    *,
    runs_here: bool = False,
) -> Job:
    return Job.objects.create(
        integration=integration,
        kind=kind,
        parameters=parameters or {},
        requested_by=user,
        runs_here=runs_here,
        deadline=timezone.now() + timedelta(seconds=deadline_seconds()),
    )


def take_here(job_id: int, time_limit: Callable[[Integration], float]) -> Job | None:
    """A worker of this site takes a job of its own (queued, or running on a worker that was lost: Celery gives it
    to another), or None when it has ended. The job must be answered within ``time_limit(integration)`` seconds."""
    job = Job.objects.select_related("integration__proxy_rule").filter(pk=job_id, runs_here=True).first()
    if job is None or job.finished:
        return None
    now = timezone.now()
    answer_by = now + timedelta(seconds=time_limit(job.integration) + ANSWER_MARGIN_SECONDS)
    taken = Job.objects.filter(pk=job.pk, state__in=UNFINISHED).update(
        state=Job.State.RUNNING, claimed_at=now, answer_deadline=answer_by, attempts=F("attempts") + 1
    )
    if not taken:
        return None
    job.refresh_from_db()
    return job


def enqueue_alerts(
    actor: Actor | None,
    integration: Integration,
    since: datetime,
    until: datetime,
    user: User | None = None,
    *,
    hostnames: Collection[str] | None = None,
    runs_here: bool = False,
) -> Job:
    """Queue Get alerts for a remote integration: the actor's names (or the hostnames given, for no actor), and the
    window. Its answer is stored for the actor, if there is one."""
    parameters = {
        "actor_id": actor.pk if actor is not None else None,
        "hostnames": list(hostnames) if hostnames is not None else actor.hostnames() if actor is not None else [],
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    return enqueue(integration, Job.Kind.ALERTS, parameters, user, runs_here=runs_here)


def unfinished_alert_jobs(actor: Actor) -> QuerySet[Job]:
    """The actor's Get alerts still waiting for, or running on, a remote node."""
    return Job.objects.filter(kind=Job.Kind.ALERTS, state__in=UNFINISHED, parameters__actor_id=actor.pk).select_related(
        "integration__remote_node"
    )


def answered(job: Job, ok: bool, result: Any, error: str) -> Ending:
    """The node's answer to the claim it holds: done, or failed with the node's reason."""
    return Ending(job, Job.State.RUNNING, Job.State.DONE if ok else Job.State.FAILED, error, result, claim_of(job))


def end(ending: Ending, now: datetime | None = None) -> bool:
    """Move the job to its end if nobody moved it first, and say whether this call did. The caller's transaction
    holds the move together with what the end means."""
    now = now or timezone.now()
    job = ending.job
    match: dict[str, Any] = {}
    if ending.claim is not None:
        match = {"node_id": ending.claim.node_id, "attempts": ending.claim.attempts}
    moved = Job.objects.filter(pk=job.pk, state=ending.expected, **match).update(
        state=ending.state, finished_at=now, error=ending.error, result=ending.result
    )
    if moved:
        job.state, job.finished_at, job.error, job.result = ending.state, now, ending.error, ending.result
    return bool(moved)


def overdue(now: datetime) -> list[Ending]:
    """The ends that time has brought by ``now``: Tests whose node did not answer in time, jobs a node went silent on
    MAX_ATTEMPTS times, and queued jobs nobody claimed by their deadline."""
    running = Job.objects.filter(state=Job.State.RUNNING).select_related("node", "integration")
    endings = [
        Ending(job, Job.State.RUNNING, Job.State.FAILED, not_answered_message(job), claim=claim_of(job))
        for job in running.filter(answer_deadline__lt=now)
    ]
    for job in running.filter(lease_expires_at__lt=now, attempts__gte=MAX_ATTEMPTS):
        message = (
            f"remote node {job.node} took this job {job.attempts} times and never answered: check its agent's log."
        )
        endings.append(Ending(job, Job.State.RUNNING, Job.State.FAILED, message))
    unclaimed = Job.objects.filter(state=Job.State.QUEUED, deadline__lt=now).select_related("integration__remote_node")
    endings += [Ending(job, Job.State.QUEUED, Job.State.EXPIRED, not_taken_message(job)) for job in unclaimed]
    return endings


def requeue_silent(now: datetime) -> None:
    """Return to the queue the jobs whose node went silent before its lease ended (fewer than MAX_ATTEMPTS times)."""
    stale = Job.objects.filter(state=Job.State.RUNNING, lease_expires_at__lt=now, attempts__lt=MAX_ATTEMPTS)
    for job in stale.select_related("node"):
        logger.warning("Job %s: node %s went silent; returning it to the queue", job.pk, job.node)
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(**_requeued(now))


def claim_of(job: Job) -> Claim:
    return Claim(job.node_id, job.attempts)


def _requeued(now: datetime) -> dict[str, Any]:
    return {
        "state": Job.State.QUEUED,
        "node": None,
        "agent_id": "",
        "lease_expires_at": None,
        "answer_deadline": None,
        "deadline": now + timedelta(seconds=deadline_seconds()),
    }


def shown(moment: datetime) -> str:
    return str(date_format(timezone.localtime(moment), "Y-m-d H:i:s T"))


def not_checked_in_message(node: RemoteNode | None) -> str:
    if node is None:
        return "This integration is Remote but has no remote node: choose one on its Edit page."
    if node.last_seen_at is None:
        return f"remote node {node.name} has never checked in: start its agent with the command on the node's page."
    seen = shown(node.last_seen_at)
    return f"remote node {node.name} has not checked in since {seen}: check that its agent is running."


def answer_bound_seconds(integration: Integration) -> float:
    """How long after its claim a Test's answer may take: the Test's own time bound plus the margin for the trips."""
    return wire.test_time_bound(integration.connect_timeout, integration.read_timeout) + ANSWER_MARGIN_SECONDS


def not_taken_message(job: Job) -> str:
    if job.runs_here:
        return (
            f"No worker of this site took the job within {deadline_seconds()} s: check on Settings > System that a "
            "worker is running, then try again."
        )
    return not_checked_in_message(job.integration.remote_node)


def not_answered_message(job: Job) -> str:
    claimed = shown(job.claimed_at) if job.claimed_at else "?"
    if job.runs_here:
        return (
            f"A worker of this site took the job at {claimed} and did not finish it in the time its timeouts allow: "
            "its log says why; try again."
        )
    bound = answer_bound_seconds(job.integration) - ANSWER_MARGIN_SECONDS
    return (
        f"remote node {job.node} took the job at {claimed} and has not answered (a Test with these "
        f"timeouts ends within {bound:g} s): check that its agent is running, then press Test again."
    )


def _claimable(node: RemoteNode) -> QuerySet[Job]:
    return Job.objects.filter(
        state=Job.State.QUEUED,
        runs_here=False,
        integration__remote_node=node,
        integration__location=Integration.Location.REMOTE,
    )


def work_waiting(node: RemoteNode) -> bool:
    """Whether a job of this node's integrations is queued (the agent then claims it, in a call of its own)."""
    return _claimable(node).exists()


def claim_next(node: RemoteNode, agent_id: str = "") -> Job | None:
    """Take the oldest queued job of this node's integrations for one of its agents, or None. Two agents never get
    the same job. (Jobs whose time is up are ended first by the caller: see operations.answers.housekeeping.)"""
    now = timezone.now()
    candidates = _claimable(node).select_related("integration").order_by("created_at", "pk")
    claimed: dict[str, Any] = {
        "state": Job.State.RUNNING,
        "node": node,
        "agent_id": agent_id,
        "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds()),
    }

    def answer_deadline(job: Job) -> datetime | None:
        if job.kind != Job.Kind.TEST:
            return None  # Get alerts pages through as many alerts as there are: only its lease bounds it
        return now + timedelta(seconds=answer_bound_seconds(job.integration))

    if connection.features.has_select_for_update_skip_locked:
        with transaction.atomic():
            job = candidates.select_for_update(skip_locked=True, of=("self",)).first()
            if job is None:
                return None
            Job.objects.filter(pk=job.pk).update(
                attempts=F("attempts") + 1, answer_deadline=answer_deadline(job), **claimed
            )
        return Job.objects.select_related("integration__proxy_rule", "node").get(pk=job.pk)
    for job in candidates[:10]:
        if Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
            attempts=F("attempts") + 1, answer_deadline=answer_deadline(job), **claimed
        ):
            return Job.objects.select_related("integration__proxy_rule", "node").get(pk=job.pk)
    return None


def payload_for(job: Job) -> wire.JobWire:
    """What the node needs to run the job, secret included (sent only to the node that claimed it). Raises one of
    ``destinations.REFUSED_SECRETS`` when the secret cannot be sent."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "integration": {"id": job.integration_id, "name": job.integration.name},
        "settings": wire.settings_to_wire(
            job.integration.to_settings(), job.node.agent_version if job.node else wire.AGENT_VERSION
        ),
        "parameters": job.parameters,
        "lease_seconds": lease_seconds(),
    }


def release(job: Job) -> None:
    """The node gives the job back unfinished (it is stopping): someone else may run it."""
    claim = claim_of(job)
    Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, node_id=claim.node_id, attempts=claim.attempts).update(
        **_requeued(timezone.now())
    )


def release_unheld(node: RemoteNode, agent_id: str, holding: Collection[int] = ()) -> list[int]:
    """Return to the queue the jobs this agent of the node claimed and says it no longer holds: their claim's answer
    never reached it, or it gave up answering. Other agents sharing the node's token keep theirs."""
    unheld = Job.objects.filter(node=node, agent_id=agent_id, state=Job.State.RUNNING).exclude(pk__in=holding)
    returned = list(unheld.values_list("pk", flat=True))
    if returned:
        Job.objects.filter(pk__in=returned, state=Job.State.RUNNING, agent_id=agent_id).update(
            **_requeued(timezone.now())
        )
        logger.warning("An agent of remote node %s no longer holds job(s) %s; back to the queue", node.name, returned)
    return returned


def withdraw(job: Job, reason: str) -> bool:
    """End a job that is still waiting or running as cancelled, saying why; its answer, if it comes, is refused."""
    now = timezone.now()
    withdrawn = Job.objects.filter(pk=job.pk, state__in=UNFINISHED).update(
        state=Job.State.CANCELLED, finished_at=now, error=reason, lease_expires_at=None, answer_deadline=None
    )
    if withdrawn:
        job.state, job.finished_at, job.error = Job.State.CANCELLED, now, reason
    return bool(withdrawn)
