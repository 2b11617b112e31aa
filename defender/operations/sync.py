"""Sync: one sweep per integration of every alert its tenant updated since the last one, matched to actors here.

A sweep costs about ⌈changed alerts / page size⌉ + 1 calls, whatever the number of actors, where asking per actor
(Get alerts) costs two or more calls per actor. Each page is matched, stored and the cursor moved in one
transaction, so the cursor never passes an alert that was not stored: a sweep that fails mid-way starts the next
one where the last stored page ended. One worker sweeps an integration at a time (a conditional UPDATE claims it).
The first sweep (or ``full``) covers the integration's lookback window. Remote integrations are not swept here: the
site cannot reach their Defender (Get alerts still asks through their node).
"""

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from defender import alert_store, presets
from defender.destinations import REFUSED_SECRETS
from defender.models import Actor, Alert, Integration, SyncState
from defender.operations import health, matching
from defender.operations.placement import runs_on_node
from defender.services import alerts as services_alerts
from defender.services import budget
from defender.services import sweep as sweeps
from defender.services.auth import api_client
from defender.services.errors import DefenderError

logger = logging.getLogger(__name__)

SCHEDULED_TASK = "defender.tasks.sync_alerts"
DEFAULT_MINUTES = 10
# How long a worker lets one sweep run (soft limit; killed 15 s later): 30,000 alerts take a few pages of seconds.
TIME_LIMIT_SECONDS = 1800
HARD_TIME_LIMIT_SECONDS = TIME_LIMIT_SECONDS + 15
# A claim older than the hard limit and a margin belongs to a worker that died: another may take the sweep.
CLAIM_STALE_SECONDS = HARD_TIME_LIMIT_SECONDS + 120
# Alert IDs looked up at a time: well inside every database's limit on a query's parameters.
LOOKUP_BATCH = 5000


class ClaimLost(Exception):
    """The sweep's claim was taken over (it ran past the stale time): this worker must not move the cursor."""


@dataclass
class SyncSummary:
    """What one sweep did; ``skipped`` says why it did not run, ``error`` why it stopped."""

    integration: str
    calls: int = 0
    fetched: int = 0
    matched: int = 0
    stored: int = 0
    unmatched: int = 0
    unreadable: int = 0
    unchanged: int = 0  # read again (the overlap before the cursor): stored as they are, or on no actor's machine
    multiple_matches: int = 0
    actors_touched: int = 0
    pages: int = 0
    skipped: str = ""
    error: str = ""
    note: str = ""
    touched: set[int] = field(default_factory=set, repr=False)

    @property
    def ok(self) -> bool:
        return not self.error and not self.skipped

    def as_dict(self) -> dict[str, object]:
        return {key: value for key, value in asdict(self).items() if key != "touched"}

    def text(self) -> str:
        """One line for a person: what was asked and what came of it."""
        if self.skipped:
            return f"{self.integration}: skipped: {self.skipped}"
        line = (
            f"{self.integration}: {self.calls} call{'s' if self.calls != 1 else ''}, {self.fetched:,} alerts fetched, "
            f"{self.matched:,} matched, {self.stored:,} stored on {self.actors_touched:,} "
            f"actor{'s' if self.actors_touched != 1 else ''}, {self.unmatched:,} on machines that are no actor"
        )
        if self.unchanged:
            line += f", {self.unchanged:,} read again unchanged"
        if self.multiple_matches:
            line += f", {self.multiple_matches:,} matched several actors (stored on the best match)"
        if self.unreadable:
            line += f", {self.unreadable:,} could not be read"
        line += "."
        if self.note:
            line += f" {self.note}"
        if self.error:
            line += f" Stopped: {self.error}"
        return line


@dataclass(frozen=True)
class ReadBefore:
    """What the last sweep read: every alert updated before its cursor, and those at the cursor it names."""

    cursor: datetime | None = None
    at_cursor: frozenset[str] = frozenset()
    full: bool = False

    def read(self, alert: services_alerts.Alert) -> bool:
        if self.cursor is None or alert.last_update is None:
            return False
        return alert.last_update < self.cursor or (alert.last_update == self.cursor and alert.id in self.at_cursor)


Progress = Callable[[SyncSummary], None]


def sync_integration(integration: Integration, full: bool = False, progress: Progress | None = None) -> SyncSummary:
    """Sweep one integration's tenant for the alerts updated since its cursor (``full``: over its lookback window
    again), store those of actors, and record how it went in its SyncState."""
    summary = SyncSummary(integration.name)
    if not integration.enabled:
        summary.skipped = "the integration is disabled."
        return summary
    if runs_on_node(integration):
        node = integration.remote_node.name if integration.remote_node else "its node"
        summary.skipped = (
            f"it is Remote (run by {node}): this site cannot reach its Defender, so it is not swept; Get alerts "
            "asks through the node."
        )
        return summary
    state, _ = SyncState.objects.get_or_create(integration=integration)
    claim = _claim(state)
    if claim is None:
        state.refresh_from_db()
        since = f" since {state.claimed_at:%Y-%m-%d %H:%M:%S} UTC" if state.claimed_at else ""
        summary.skipped = f"another sweep of it is running{since}."
        return summary
    try:
        # A sweep is background work: it keeps to its share of the call budget and lets a person's Test or Get
        # alerts go first.
        with budget.background():
            _sweep(integration, state, claim, full, summary, progress)
    except ClaimLost:
        summary.error = "the sweep ran past its time and another took it over; its stored pages are kept."
    except REFUSED_SECRETS as error:
        summary.error = str(error)
    except DefenderError as error:
        summary.error = str(error)
    except Exception:
        logger.exception("The alert sweep of integration %s failed", integration.pk)
        summary.error = "the sweep failed unexpectedly; the server log has the details. The stored pages are kept."
    _finish(state, claim, summary)
    return summary


def _claim(state: SyncState) -> str | None:
    """Take the sweep (a conditional UPDATE: two workers cannot both succeed), or None when another holds it."""
    now = timezone.now()
    token = str(uuid.uuid4())
    stale = now - timedelta(seconds=CLAIM_STALE_SECONDS)
    free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale)
    taken = SyncState.objects.filter(free, pk=state.pk).update(claimed_at=now, claim=token, last_started_at=now)
    return token if taken else None


def _finish(state: SyncState, claim: str, summary: SyncSummary) -> None:
    summary.actors_touched = len(summary.touched)
    SyncState.objects.filter(pk=state.pk, claim=claim).update(
        claimed_at=None,
        claim="",
        last_finished_at=timezone.now(),
        last_ok=summary.ok,
        last_summary=summary.as_dict(),
        last_error=summary.error,
    )


def _sweep(
    integration: Integration,
    state: SyncState,
    claim: str,
    full: bool,
    summary: SyncSummary,
    progress: Progress | None,
) -> None:
    settings = integration.to_settings()
    now = timezone.now()
    since: datetime = now - timedelta(hours=integration.lookback_hours)
    seen: list[str] = []
    read_before = ReadBefore(full=full)
    if state.cursor is not None and not full:
        since, seen = state.cursor, list(state.cursor_alert_ids or [])
        if integration.clock_skew_seconds:
            # Read again the clock-skew tolerance before the cursor: an alert Defender makes visible late, stamped
            # before the cursor, is found by this sweep instead of never. What the last sweep read is not counted
            # twice.
            read_before = ReadBefore(since, frozenset(seen))
            since, seen = since - timedelta(seconds=integration.clock_skew_seconds), []
    tenant = alert_store.tenant_key(integration)
    actors = list(Actor.objects.only("pk", "hostname", "alternate_hostname", "ip_address").order_by("pk"))
    index = matching.ActorIndex(actors, matching.learnt_machines(tenant))
    api = api_client(settings)  # one client for the whole sweep: one token source, one session
    machine_addresses: dict[str, set[str]] = {}
    try:
        if index.wants_addresses and settings.flavour == presets.MDE:
            # MDE's alerts name no IP address: one listing of the machines maps their IDs to addresses.
            machine_addresses = sweeps.machine_addresses(api)
        for page in sweeps.sweep(api, since, seen):
            summary.calls = api.calls
            summary.pages += 1
            summary.fetched += len(page.alerts)
            summary.unreadable += page.unreadable
            summary.note = page.note
            with transaction.atomic():
                _store_page(integration, tenant, index, page, machine_addresses, summary, read_before)
                if page.cursor is not None:
                    moved = SyncState.objects.filter(pk=state.pk, claim=claim).update(
                        cursor=page.cursor, cursor_alert_ids=list(page.cursor_ids)
                    )
                    if not moved:
                        raise ClaimLost()
            if progress is not None:
                summary.actors_touched = len(summary.touched)
                progress(summary)
    finally:
        # Every request sent counts, the failed ones and their retries too: the tenant's budget counts them.
        summary.calls = api.calls


def _store_page(
    integration: Integration,
    tenant: str,
    index: matching.ActorIndex,
    page: sweeps.SweepPage,
    machine_addresses: dict[str, set[str]],
    summary: SyncSummary,
    read_before: ReadBefore,
) -> None:
    """Match each alert of the page to its best actor and store it there; learn the machine IDs matched by name.
    An alert stored already with the same last update time is left as it is; one the last sweep read and could not
    match is not counted again."""
    per_actor: dict[int, list[services_alerts.Alert]] = {}
    learnt: set[tuple[int, str]] = set()
    # A full sweep stores everything again (matched anew); an incremental one skips what it would not change.
    stored = {} if read_before.full else _stored_updates(tenant, [swept.alert.id for swept in page.alerts])
    for swept in page.alerts:
        again = read_before.read(swept.alert)
        if swept.alert.id in stored and stored[swept.alert.id] == swept.alert.last_update:
            summary.unchanged += 1
            continue
        addresses = list(swept.addresses) + sorted(machine_addresses.get(swept.machine_id, ()))
        found = index.matches(swept.reported, swept.machine_id, addresses)
        if not found:
            if again:
                summary.unchanged += 1
            else:
                summary.unmatched += 1
            continue
        best = found[0]
        summary.matched += 1
        if len(found) > 1:
            summary.multiple_matches += 1
        if swept.machine_id and best.rank not in (matching.MACHINE_ID, matching.IP_ADDRESS):
            learnt.add((best.actor_id, swept.machine_id))
        per_actor.setdefault(best.actor_id, []).append(replace(swept.alert, matched_name=best.matched_name))
    now = timezone.now()
    for actor_id, alerts in per_actor.items():
        summary.stored += alert_store.store_alerts(index.actors[actor_id], integration, alerts, now)
        summary.touched.add(actor_id)
    if learnt:
        matching.learn(tenant, learnt)


def _stored_updates(tenant: str, alert_ids: list[str]) -> dict[str, datetime | None]:
    """The last update time of each of these alerts that is stored, by alert ID."""
    found: dict[str, datetime | None] = {}
    for start in range(0, len(alert_ids), LOOKUP_BATCH):
        batch = alert_ids[start : start + LOOKUP_BATCH]
        found.update(Alert.objects.filter(tenant_id=tenant, alert_id__in=batch).values_list("alert_id", "last_update"))
    return found


# --- which integrations, for the command and the task ---------------------------------------------------------------


def integrations_named(keys: list[str]) -> tuple[list[Integration], list[str]]:
    """The integrations named (by name, any case, or by id) and the keys that name none."""
    found: list[Integration] = []
    unknown: list[str] = []
    every = list(Integration.objects.select_related("remote_node", "proxy_rule").order_by("name"))
    for key in keys:
        match = [item for item in every if item.name.lower() == key.strip().lower()]
        if not match and key.strip().isdigit():
            match = [item for item in every if item.pk == int(key)]
        if match:
            found += [item for item in match if item not in found]
        else:
            unknown.append(key)
    return found, unknown


def sweepable() -> list[Integration]:
    """Every enabled integration, in name order."""
    return list(Integration.objects.filter(enabled=True).select_related("remote_node", "proxy_rule").order_by("name"))


# --- the schedule ---------------------------------------------------------------------------------------------------


def schedule_minutes(integration: Integration) -> int | None:
    """Every how many minutes the integration is swept; None when it is not. Free of queries when the integration
    was loaded with select_related("sync_schedule__interval")."""
    if integration.sync_schedule_id is None:
        return None
    try:
        task = integration.sync_schedule
    except PeriodicTask.DoesNotExist:  # deleted behind the cached integration's back
        return None
    return health.interval_minutes(task)


def set_schedule(integration: Integration, minutes: int | None) -> None:
    """Sweep the integration every ``minutes`` minutes; 0 or None turns it off (its periodic task goes). The same
    number as now keeps the schedule as it is."""
    with transaction.atomic():
        task = None
        if integration.sync_schedule_id is not None:
            task = PeriodicTask.objects.filter(pk=integration.sync_schedule_id).first()
        if not minutes:
            if task is not None:
                task.delete()
            integration.sync_schedule = None
            return
        name, args = schedule_name(integration), json.dumps([integration.pk])
        if task is None:
            task = PeriodicTask.objects.create(name=name, task=SCHEDULED_TASK, interval=_interval(minutes), args=args)
            Integration.objects.filter(pk=integration.pk).update(sync_schedule=task)
            integration.sync_schedule = task
            return
        if minutes != schedule_minutes(integration):
            task.interval, task.crontab, task.solar, task.clocked = _interval(minutes), None, None, None
        task.name, task.task, task.args, task.enabled = name, SCHEDULED_TASK, args, True
        task.save()


def schedule_name(integration: Integration) -> str:
    suffix = f" (integration {integration.pk})"
    return f"Alert sweep: {integration.name}"[: 200 - len(suffix)] + suffix


def _interval(minutes: int) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period=IntervalSchedule.MINUTES)
    return interval


def forget_schedule(integration_id: int) -> None:
    PeriodicTask.objects.filter(task=SCHEDULED_TASK, args=json.dumps([integration_id])).delete()


# --- what the actor's page says -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LastSync:
    integration: str
    finished_at: datetime | None
    ok: bool | None
    summary: str


def last_syncs() -> list[LastSync]:
    """When each enabled, swept integration last synced and how it went (one query, whatever the actors' alerts)."""
    states = SyncState.objects.filter(integration__enabled=True).select_related("integration")
    shown = []
    for state in states.order_by("integration__name"):
        if state.last_finished_at is None:
            continue
        if state.last_ok:
            stored = state.last_summary.get("stored", 0) if isinstance(state.last_summary, dict) else 0
            said = f"{stored:,} alerts stored" if isinstance(stored, int) else "synced"
        else:
            said = state.last_error or "failed"
        shown.append(LastSync(state.integration.name, state.last_finished_at, state.last_ok, said))
    return shown
