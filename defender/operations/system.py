"""What Settings > System shows: the workers, the queue, the schedules, each integration's last health check and the
call budgets (one per app, tenant and API, with what was used this minute and this hour).

A fixed number of queries whatever the number of workers, schedules or integrations: the schedules come with their
interval, crontab, solar or clocked rows joined, and each health-check schedule is matched to its integration from
the one list of integrations.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from defender.models import Integration, Worker
from defender.operations import engine
from defender.services import budget
from defender.services import hunting as hunting_api


@dataclass(frozen=True)
class WorkerStatus:
    worker: Worker
    online: bool


@dataclass(frozen=True)
class Schedule:
    """A periodic task as the page lists it, with its timing in words."""

    task: PeriodicTask
    timing: str
    # The integration whose scheduled health check (or alert sweep) this is, if it is one.
    integration: Integration | None
    what: str = "health check"


@dataclass(frozen=True)
class CallBudget:
    """One budget as the page lists it: the integrations that share it, its limits and what was used of them."""

    integrations: list[Integration]
    api: str
    per_minute: int
    per_hour: int | None
    used_minute: int | None  # None: the count could not be read (Redis did not answer)
    used_hour: int | None
    paused_until: datetime | None


@dataclass(frozen=True)
class Overview:
    workers: list[WorkerStatus]
    queue: engine.Queue
    schedules: list[Schedule]
    integrations: list[Integration]
    online_seconds: int
    call_budgets: list[CallBudget]
    budgets_shared: bool  # counted for every worker (Redis), or only in this process

    @property
    def online_count(self) -> int:
        return sum(status.online for status in self.workers)


def schedule_timing(task: PeriodicTask) -> str:
    """When the task runs, as django-celery-beat writes it ("every 15 minutes", a crontab line, a solar event)."""
    if task.interval is not None:
        return str(task.interval)
    if task.crontab is not None:
        return f"crontab {task.crontab}"
    if task.solar is not None:
        return str(task.solar)
    if task.clocked is not None:
        return f"once at {task.clocked}"
    return "no schedule"


def worker_statuses(now: datetime) -> list[WorkerStatus]:
    # Every row, the silent ones too: a worker killed without stopping stays listed as last seen at its last heartbeat.
    online_since = now - timedelta(seconds=engine.ONLINE_SECONDS)
    return [WorkerStatus(worker, worker.last_seen_at >= online_since) for worker in Worker.objects.all()]


def overview() -> Overview:
    integrations = list(Integration.objects.order_by("name"))
    by_task = {
        task_id: (integration, what)
        for integration in integrations
        for task_id, what in (
            (integration.health_check_id, "health check"),
            (integration.sync_schedule_id, "alert sweep"),
        )
        if task_id
    }
    tasks = PeriodicTask.objects.select_related("interval", "crontab", "solar", "clocked").order_by("name")
    return Overview(
        workers=worker_statuses(timezone.now()),
        queue=engine.queue(),
        schedules=[Schedule(task, schedule_timing(task), *by_task.get(task.pk, (None, ""))) for task in tasks],
        integrations=integrations,
        online_seconds=engine.ONLINE_SECONDS,
        call_budgets=call_budgets(integrations),
        budgets_shared=budget.backend().shared,
    )


def call_budgets(integrations: list[Integration]) -> list[CallBudget]:
    """Each budget the integrations call on, with the smallest limits set among them (Microsoft's where none is),
    in the order of their first integration's name, then each tenant's advanced-hunting budget. Keyed without any
    secret."""
    groups: dict[str, list[Integration]] = {}
    hunting: dict[str, list[Integration]] = {}
    for integration in integrations:
        key = budget.budget_key(integration.client_id, integration.tenant_id, integration.api_flavour)
        groups.setdefault(key, []).append(integration)
        if integration.api_flavour in hunting_api.PATHS and integration.location == Integration.Location.LOCAL:
            hunting.setdefault(budget.hunting_budget_key(integration.tenant_id), []).append(integration)
    listed = []
    for key, group in groups.items():
        default = budget.DEFAULT_LIMITS[group[0].api_flavour]
        per_minute = min((i.calls_per_minute for i in group if i.calls_per_minute), default=default.per_minute)
        per_hour = min((i.calls_per_hour for i in group if i.calls_per_hour), default=default.per_hour)
        listed.append(_call_budget(key, group, budget.API_LABELS[group[0].api_flavour], per_minute, per_hour))
    for key, group in hunting.items():
        limits = [budget.hunting_limits(i.calls_per_minute, i.calls_per_hour) for i in group]
        per_minute = min(limit.per_minute for limit in limits)
        per_hour = min((limit.per_hour for limit in limits if limit.per_hour), default=None)
        listed.append(_call_budget(key, group, budget.API_LABELS[budget.HUNTING], per_minute, per_hour))
    return listed


def _call_budget(key: str, group: list[Integration], api: str, per_minute: int, per_hour: int | None) -> CallBudget:
    try:
        used = budget.usage(key)
    except budget.BudgetUnavailable:
        return CallBudget(group, api, per_minute, per_hour, None, None, None)
    paused = datetime.fromtimestamp(used.paused_until, UTC) if used.paused_until else None
    return CallBudget(group, api, per_minute, per_hour, used.minute, used.hour, paused)
