"""Get alerts: ask the chosen integrations for an actor's alerts (here, or through their remote node) and store what
each answered.

One integration failing (a wrong secret, a closed port, a key that no longer opens the secret, an answer that cannot
be stored) is recorded for that integration and never stops the others, nor touches what they stored.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from defender import alert_store
from defender.alert_store import Outcome
from defender.destinations import REFUSED_SECRETS
from defender.models import Actor, AlertFetch, Integration, Job
from defender.operations import answers, background, records
from defender.operations.placement import runs_on_node
from defender.remote import jobs
from defender.services.alerts import alerts_for_actor
from defender.services.connection import ConnectionSettings
from defender.services.errors import DefenderError

logger = logging.getLogger(__name__)

# Integrations are asked side by side so that the person waiting does not wait for each in turn; only a handful at
# a time, so that integrations sharing one tenant do not spend its per-minute call budget all at once.
PARALLEL_ASKS = 4
# Pages of alerts one Get alerts is given time for, at its integration's timeouts and retries.
LIMIT_PAGES = 10


class NotAnswered(Exception):
    """No remote node answered: none can take the job, or none did within the time given (``timed_out``)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def get_alerts(
    actor: Actor,
    integrations: list[Integration],
    since: datetime,
    until: datetime,
    user: User | None = None,
) -> list[Job]:
    """Pressing Get alerts: one job per integration, asked by a worker of this site (Local) or claimed by the
    integration's node (Remote); the actor's page waits for them. Returns the jobs."""
    queued = []
    for integration in integrations:
        here = not runs_on_node(integration)
        job = jobs.enqueue_alerts(actor, integration, since, until, user, runs_here=here)
        if here:
            from defender import tasks  # the tasks call this module

            background.submit(tasks.get_alerts, job.pk, time_limit=time_limit_seconds(integration))
        queued.append(job)
    return queued


def time_limit_seconds(integration: Integration) -> float:
    """How long a worker lets one Get alerts run: a few pages at the integration's timeouts, and every retry's wait
    (at most a minute each)."""
    attempt = integration.connect_timeout + 2 * integration.read_timeout
    return float(LIMIT_PAGES * attempt + (integration.max_retries + 1) * 60)


def run_job_here(job_id: int) -> None:
    """A worker's part of Get alerts: take the job, ask the integration, store the answer for the actor, end the job.
    Run again after a worker was lost, it asks again (storing is idempotent); a job that ended meanwhile (cancelled,
    or past its time) is left as it ended and what was found is dropped."""
    job = jobs.take_here(job_id, time_limit_seconds)
    if job is None:
        return
    since, until = (datetime.fromisoformat(job.parameters[key]) for key in ("since", "until"))
    [outcome] = _ask_here([job.integration], list(job.parameters.get("hostnames", ())), since, until)
    actor = Actor.objects.filter(pk=job.parameters.get("actor_id")).first()
    with transaction.atomic():
        ok, message = outcome.ok, outcome.message
        ending = jobs.Ending(job, Job.State.RUNNING, Job.State.DONE if ok else Job.State.FAILED, "" if ok else message)
        if not jobs.end(ending):
            return
        if actor is not None:  # None: the actor was deleted meanwhile
            fetch = alert_store.record_outcome(actor, outcome, timezone.now())
            if ok and not fetch.ok:
                jobs.end(jobs.Ending(job, Job.State.DONE, Job.State.FAILED, fetch.message))


def get_alerts_waiting(
    integration: Integration,
    hostnames: list[str],
    since: datetime | None,
    until: datetime | None,
    *,
    actor: Actor | None,
    timeout: float,
    user: User | None = None,
) -> Outcome:
    """Get alerts from one integration and wait for its answer (a remote node's for at most ``timeout`` seconds),
    stored for the actor as Get alerts stores it; with no actor, only asked. The window defaults to the integration's
    lookback ending now. Raises NotAnswered when no node answered."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(hours=integration.lookback_hours)
    if not runs_on_node(integration):
        [outcome] = _ask_here([integration], hostnames, since, until)
        if actor is None:
            return outcome
        fetch = alert_store.record_outcome(actor, outcome, timezone.now())
        return outcome if fetch.ok else replace(outcome, ok=False, message=fetch.message, alerts=())
    problem = answers.node_unavailable(integration)
    if problem:
        raise NotAnswered(problem)
    job = answers.wait(jobs.enqueue_alerts(actor, integration, since, until, user, hostnames=hostnames), timeout)
    if not job.finished:
        why = answers.give_up(job, timeout)
        if why:
            raise NotAnswered(why, timed_out=True)
        job = answers.refreshed(job.pk)
    # Recorded when it ended: a failure to store it is the job's failure.
    return records.remote_outcome(job)


def pending_alert_jobs(actor: Actor) -> list[Job]:
    """The actor's Get alerts still waiting for a worker or a remote node, or running (one query)."""
    return list(jobs.unfinished_alert_jobs(actor))


def fetch_alerts(actor: Actor, integrations: list[Integration], since: datetime, until: datetime) -> list[AlertFetch]:
    """Ask these integrations from this site for the actor's alerts between since and until, store them, and record
    each ask. Returns the AlertFetch rows, one per integration, in the order given."""
    outcomes = _ask_here(integrations, actor.hostnames(), since, until)
    asked_at = timezone.now()
    # One transaction per integration: an answer that cannot be stored fails its own ask, never the others'.
    return [alert_store.record_outcome(actor, outcome, asked_at) for outcome in outcomes]


def _ask_here(integrations: list[Integration], names: list[str], since: datetime, until: datetime) -> list[Outcome]:
    """Each integration's answer, asked side by side, in the order given."""
    prepared: list[tuple[Integration, ConnectionSettings]] = []
    outcomes: dict[int, Outcome] = {}
    for integration in integrations:
        try:
            # Decrypting (and checking where the secret may go) happens here, before any worker starts: a secret
            # that cannot be sent is this integration's failed answer, and nothing is sent anywhere.
            prepared.append((integration, integration.to_settings()))
        except REFUSED_SECRETS as error:
            outcomes[integration.pk] = Outcome(integration, False, str(error), since, until, tuple(names))
    if prepared:
        with ThreadPoolExecutor(max_workers=min(PARALLEL_ASKS, len(prepared))) as pool:
            asks = [pool.submit(_ask, integration, settings, names, since, until) for integration, settings in prepared]
            for ask in asks:
                outcome = ask.result()
                outcomes[outcome.integration.pk] = outcome
    return [outcomes[integration.pk] for integration in integrations]


def _ask(
    integration: Integration, settings: ConnectionSettings, names: list[str], since: datetime, until: datetime
) -> Outcome:
    try:
        result = alerts_for_actor(settings, names, since, until)
    except DefenderError as error:
        return Outcome(integration, False, str(error), since, until, tuple(names))
    except Exception:
        # A defect in one integration's answer must not hide the alerts the others found.
        logger.exception("Getting alerts from integration %s failed unexpectedly", integration.pk)
        message = f"Getting alerts from {integration.name} failed unexpectedly; the server log has the details."
        return Outcome(integration, False, message, since, until, tuple(names))
    # The window as asked (the default lookback when none was given), without the clock-skew widening.
    skew = timedelta(seconds=settings.clock_skew_seconds)
    return Outcome(
        integration,
        True,
        result.message,
        result.window.since + skew,
        result.window.until - skew,
        tuple(result.tried_names),
        tuple(result.alerts),
    )
