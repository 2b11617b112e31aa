"""The site's queue of remote jobs: enqueue, claim atomically, lease, expire, and take the node's answer.

Claiming is atomic: on PostgreSQL with SELECT ... FOR UPDATE SKIP LOCKED (agents polling at once each get a different
job without waiting on each other); elsewhere with a conditional UPDATE that only one agent can win. A job whose node
took it and went silent returns to the queue when its lease ends; a job nobody claims by its deadline expires; a Test
that has no answer by the time its timeouts allow (plus a margin) fails, since a live node always answers by then.

An agent process says, each time it checks in, which jobs it holds (none: it runs one at a time and checks in between),
so a claim whose answer never reached it (lost on the way, or cut short as it stopped) goes straight back to the queue.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.formats import date_format

from defender.models import Integration, Job
from defender.remote import wire

logger = logging.getLogger(__name__)


# A job whose node went silent this many times fails instead of going round again.
MAX_ATTEMPTS = 3
# Added to a Test's own time bound for the job's trip to the node and the answer's trip back (with its retries).
ANSWER_MARGIN_SECONDS = 30


def deadline_seconds():
    return settings.REMOTE_JOB_DEADLINE_SECONDS


def lease_seconds():
    return settings.REMOTE_JOB_LEASE_SECONDS


def enqueue(integration, kind, parameters=None, user=None):
    return Job.objects.create(
        integration=integration,
        kind=kind,
        parameters=parameters or {},
        requested_by=user,
        deadline=timezone.now() + timedelta(seconds=deadline_seconds()),
    )


def enqueue_alerts(actor, integration, since, until, user=None):
    """Queue Get alerts for a remote integration; its node stores them for the actor when it answers."""
    parameters = {
        "actor_id": actor.pk,
        "hostnames": actor.hostnames(),
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    return enqueue(integration, Job.Kind.ALERTS, parameters, user)


def pending_alert_jobs(actor):
    """The actor's Get alerts still waiting for, or running on, a remote node (one query when there are none)."""
    pending = Job.objects.filter(
        kind=Job.Kind.ALERTS,
        state__in=(Job.State.QUEUED, Job.State.RUNNING),
        parameters__actor_id=actor.pk,
    ).select_related("integration__remote_node")
    if not pending.exists():
        return []
    housekeeping()  # a job past its deadline is shown as expired, not as waiting
    return list(pending)


def housekeeping(now=None):
    """Fail the Tests whose node did not answer in time, return silent nodes' jobs to the queue (or fail them after
    MAX_ATTEMPTS) and expire the unclaimed ones."""
    now = now or timezone.now()
    late = Job.objects.filter(state=Job.State.RUNNING, answer_deadline__lt=now).select_related("node", "integration")
    for job in late:
        _finish_once(job, Job.State.RUNNING, Job.State.FAILED, now, error=not_answered_message(job), **_claim_of(job))
    stale = Job.objects.filter(state=Job.State.RUNNING, lease_expires_at__lt=now).select_related("node", "integration")
    for job in stale:
        if job.attempts >= MAX_ATTEMPTS:
            message = (
                f"remote node {job.node} took this job {job.attempts} times and never answered: check its agent's log."
            )
            _finish_once(job, Job.State.RUNNING, Job.State.FAILED, now, error=message)
            continue
        logger.warning("Job %s: node %s went silent; returning it to the queue", job.pk, job.node)
        Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, attempts=job.attempts).update(**_requeued(now))
    overdue = Job.objects.filter(state=Job.State.QUEUED, deadline__lt=now).select_related("integration__remote_node")
    for job in overdue:
        _finish_once(
            job, Job.State.QUEUED, Job.State.EXPIRED, now, error=not_checked_in_message(job.integration.remote_node)
        )


def _finish_once(job, expected_state, state, now, *, error="", result=None, **match):
    """Move the job from expected_state to its end and record the outcome, only if nobody else did it first."""
    with transaction.atomic():
        finished = Job.objects.filter(pk=job.pk, state=expected_state, **match).update(
            state=state, finished_at=now, error=error, result=result
        )
        if finished:
            job.state, job.finished_at, job.error, job.result = state, now, error, result
            # Imported here: the use cases queue jobs through this module.
            from defender.operations.answers import record

            record(job)
    return bool(finished)


def _claim_of(job):
    """What identifies one claim of the job: a later claim (after a re-queue) is not touched by a change to this one."""
    return {"node_id": job.node_id, "attempts": job.attempts}


def _requeued(now):
    return {
        "state": Job.State.QUEUED,
        "node": None,
        "agent_id": "",
        "lease_expires_at": None,
        "answer_deadline": None,
        "deadline": now + timedelta(seconds=deadline_seconds()),
    }


def _shown(moment):
    return date_format(timezone.localtime(moment), "Y-m-d H:i:s T")


def not_checked_in_message(node):
    if node is None:
        return "This integration is Remote but has no remote node: choose one on its Edit page."
    if node.last_seen_at is None:
        return f"remote node {node.name} has never checked in: start its agent with the command on the node's page."
    seen = _shown(node.last_seen_at)
    return f"remote node {node.name} has not checked in since {seen}: check that its agent is running."


def answer_bound_seconds(integration):
    """How long after its claim a Test's answer may take: the Test's own time bound plus the margin for the trips."""
    return wire.test_time_bound(integration.connect_timeout, integration.read_timeout) + ANSWER_MARGIN_SECONDS


def not_answered_message(job):
    bound = answer_bound_seconds(job.integration) - ANSWER_MARGIN_SECONDS
    return (
        f"remote node {job.node} took the job at {_shown(job.claimed_at)} and has not answered (a Test with these "
        f"timeouts ends within {bound:g} s): check that its agent is running, then press Test again."
    )


def _claimable(node):
    return Job.objects.filter(
        state=Job.State.QUEUED,
        integration__remote_node=node,
        integration__location=Integration.Location.REMOTE,
    )


def work_waiting(node):
    """Whether a job of this node's integrations is queued (the agent then claims it, in a call of its own)."""
    return _claimable(node).exists()


def claim_next(node, tidy=True, agent_id=""):
    """Take the oldest queued job of this node's integrations for one of its agents, or None. Two agents never get
    the same job."""
    if tidy:
        housekeeping()
    now = timezone.now()
    candidates = _claimable(node).select_related("integration").order_by("created_at", "pk")
    claimed = {
        "state": Job.State.RUNNING,
        "node": node,
        "agent_id": agent_id,
        "claimed_at": now,
        "lease_expires_at": now + timedelta(seconds=lease_seconds()),
    }

    def answer_deadline(job):
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
        return Job.objects.select_related("integration__proxy_rule").get(pk=job.pk)
    for job in candidates[:10]:
        if Job.objects.filter(pk=job.pk, state=Job.State.QUEUED).update(
            attempts=F("attempts") + 1, answer_deadline=answer_deadline(job), **claimed
        ):
            return Job.objects.select_related("integration__proxy_rule").get(pk=job.pk)
    return None


def payload_for(job):
    """What the node needs to run the job, secret included (sent only to the node that claimed it)."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "integration": {"id": job.integration_id, "name": job.integration.name},
        "settings": wire.settings_to_wire(job.integration.to_settings()),
        "parameters": job.parameters,
        "lease_seconds": lease_seconds(),
    }


def complete(job, ok, result, error):
    """Store the node's answer: a Test is recorded on its integration, alerts are stored for the actor.

    Only the claim that is still running takes effect: an answer that arrives after the job was re-queued and taken
    again (or a repeated answer) changes nothing and returns False. The answer and its records are one transaction:
    if they cannot be stored, the job stays running and is run again after its lease.
    """
    state = Job.State.DONE if ok else Job.State.FAILED
    return _finish_once(job, Job.State.RUNNING, state, timezone.now(), error=error, result=result, **_claim_of(job))


def release(job):
    """The node gives the job back unfinished (it is stopping): someone else may run it."""
    Job.objects.filter(pk=job.pk, state=Job.State.RUNNING, **_claim_of(job)).update(**_requeued(timezone.now()))


def release_unheld(node, agent_id, holding=()):
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


def cancel(job, user):
    """End a job that is still waiting or running, at the request of the person who waits for it.

    The integration's last Test is left as it was: a cancelled Test proved nothing. The node's answer, if it comes,
    is refused.
    """
    now = timezone.now()
    error = f"Cancelled by {user.get_username()} at {_shown(now)}."
    cancelled = Job.objects.filter(pk=job.pk, state__in=(Job.State.QUEUED, Job.State.RUNNING)).update(
        state=Job.State.CANCELLED, finished_at=now, error=error, lease_expires_at=None, answer_deadline=None
    )
    if cancelled:
        logger.info("Job %s cancelled by %s", job.pk, user.get_username())
    return bool(cancelled)


def refreshed(job_id):
    """The job as it stands now, after housekeeping: what the waiting page shows."""
    housekeeping()
    return Job.objects.select_related("integration__remote_node").get(pk=job_id)
