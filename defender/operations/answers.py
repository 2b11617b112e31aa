"""What a remote job's end means, and the one path every end takes.

A node's answer, a refusal of it, and the ends that time brings (a Test not answered in time, a node silent too often,
a job nobody claimed) all go through ``end_job``: the job's move and its records (a Test recorded on its integration,
alerts stored for the actor, as a local Test or Get alerts leaves them) are one transaction. If the records cannot be
stored, the move is undone with them and the job stays running, to be run again after its lease.
"""

import logging
import time
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from defender.destinations import REFUSED_SECRETS
from defender.models import Integration, Job
from defender.operations.records import record
from defender.remote import jobs, wire

logger = logging.getLogger(__name__)

# How often a command waiting for a node looks at its job: the agent answers within its check-in, so a second is
# short next to any job.
WAIT_POLL_SECONDS = 0.5


def complete(job: Job, ok: bool, result: object, error: str) -> bool:
    """Take the node's answer to the claim it holds, and record it. An answer that arrives after the job was re-queued
    and taken again (or a repeated answer) changes nothing and returns False."""
    return end_job(jobs.answered(job, ok, result, error))


def fail(job: Job, error: str) -> bool:
    """End the running claim as failed, saying why (an answer the site refused, a secret it could not send)."""
    return complete(job, False, None, error)


def payload_or_fail(job: Job) -> wire.JobWire | None:
    """What the node that claimed the job needs to run it, secret included; None when the secret cannot be sent (no
    key opens it, or it was typed for another destination): nothing the node could do, so the job fails here saying
    why, and the node never sees the secret."""
    try:
        return jobs.payload_for(job)
    except REFUSED_SECRETS as error:
        fail(job, str(error))
        return None


def end_job(ending: jobs.Ending, now: datetime | None = None) -> bool:
    """Move the job to its end and record what it means, in one transaction; False if someone moved it first."""
    with transaction.atomic():
        if not jobs.end(ending, now):
            return False
        record(ending.job)
    return True


def housekeeping(now: datetime | None = None) -> None:
    """End the jobs whose time is up (each recorded as its answer would be) and return to the queue those whose node
    went silent. A periodic task, the node API and a command waiting for a job call this; it is cheap when nothing
    is due. (Pages only read: what time ended is shown once this has run.)"""
    now = now or timezone.now()
    for ending in jobs.overdue(now):
        end_job(ending, now)
    jobs.requeue_silent(now)


def refreshed(job_id: int) -> Job:
    """The job as it stands now: what the waiting page shows. Raises Job.DoesNotExist."""
    return Job.objects.select_related("integration__remote_node", "node").get(pk=job_id)


def node_unavailable(integration: Integration) -> str | None:
    """Why no node will take this integration's job now (it has none, or none of its agents ever checked in), or
    None: worth queueing and waiting."""
    node = integration.remote_node
    if node is None or node.last_seen_at is None:
        return jobs.not_checked_in_message(node)
    return None


def wait(job: Job, timeout: float) -> Job:
    """The job once it has ended (answered, or ended by housekeeping), or as it stands after ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while True:
        housekeeping()
        job = refreshed(job.pk)
        left = give_up - time.monotonic()
        if job.finished or left <= 0:
            return job
        time.sleep(min(WAIT_POLL_SECONDS, left))


def give_up(job: Job, waited: float) -> str | None:
    """Withdraw a job nobody waits for any more (its answer, if it comes, is refused) and say, in a sentence, why it
    had no answer after ``waited`` seconds; None if it ended meanwhile (its answer counts)."""
    node = job.node or job.integration.remote_node
    if job.state == Job.State.RUNNING and job.claimed_at:
        why = (
            f"remote node {node} took the job at {jobs.shown(job.claimed_at)} and had not answered after {waited:g} s: "
            "its agent's log says what it is doing."
        )
    elif node is not None and node.last_seen_at is not None and node.last_seen_at < job.created_at:
        why = jobs.not_checked_in_message(node)
    else:
        why = f"remote node {node} did not take the job within {waited:g} s: it may be busy with other jobs."
    return why if jobs.withdraw(job, f"Nobody waited for its answer any more: {why}") else None


def cancel(job: Job, user: User) -> bool:
    """End a job that is still waiting or running, at the request of the person who waits for it; False if it had
    ended already (it keeps its outcome).

    Nothing is recorded: the integration's last Test is left as it was (a cancelled Test proved nothing), and the
    actor's alerts as they were. The node's answer, if it comes, is refused.
    """
    cancelled = jobs.withdraw(job, f"Cancelled by {user.get_username()} at {jobs.shown(timezone.now())}.")
    if cancelled:
        logger.info("Job %s cancelled by %s", job.pk, user.get_username())
    return cancelled
