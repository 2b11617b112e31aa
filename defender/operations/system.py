"""What Settings > System shows: the workers, the queue, the schedules and each integration's last health check.

A fixed number of queries whatever the number of workers, schedules or integrations: the schedules come with their
interval, crontab, solar or clocked rows joined, and each health-check schedule is matched to its integration from
the one list of integrations.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from defender.models import Integration, Worker
from defender.operations import engine


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
class Overview:
    workers: list[WorkerStatus]
    queue: engine.Queue
    schedules: list[Schedule]
    integrations: list[Integration]
    online_seconds: int

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
    )
