"""Operational status: an integration's health over its Tests (pressed or scheduled), its schedule, the
notifications when it goes down and when it recovers, and the history its page shows as a status strip.

Every Test of a saved integration ends in ``records.record_test_result``, which calls ``after_test``: so a pressed
Test, a scheduled one, a command's and a remote node's answer all count the same. The schedule itself is a
django-celery-beat periodic task (editable in the Django admin); the integration form sets the common case, every N
minutes.
"""

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from defender.models import HealthState, Integration, TestRun
from defender.operations import background
from defender.services import notify
from defender.services.steps import FAILED, TestResult

logger = logging.getLogger(__name__)

SCHEDULED_TASK = "defender.tasks.scheduled_test"
DOWN, UP = "down", "up"
HISTORY_LENGTH = 90
SECONDS_PER_PERIOD = {
    IntervalSchedule.MICROSECONDS: 1e-6,
    IntervalSchedule.SECONDS: 1,
    IntervalSchedule.MINUTES: 60,
    IntervalSchedule.HOURS: 3600,
    IntervalSchedule.DAYS: 86400,
}


# --- after each Test ------------------------------------------------------------------------------------------------


def after_test(integration: Integration, result: TestResult) -> None:
    """Count the Test towards the integration's health, and queue a notification when its state flips.

    Each change is a conditional UPDATE, so that two Tests finishing at once flip the state (and notify) once: the
    second UPDATE finds the row already flipped and changes nothing."""
    rows = Integration.objects.filter(pk=integration.pk)
    event = None
    if result.ok:
        if rows.filter(health_state=HealthState.DOWN).update(health_state=HealthState.UP, consecutive_failures=0):
            event = UP
        else:
            rows.update(health_state=HealthState.UP, consecutive_failures=0)
    else:
        rows.update(consecutive_failures=F("consecutive_failures") + 1)
        reached = rows.filter(consecutive_failures__gte=F("notify_after_failures")).exclude(
            health_state=HealthState.DOWN
        )
        if reached.update(health_state=HealthState.DOWN):
            event = DOWN
    integration.refresh_from_db(fields=["health_state", "consecutive_failures"])
    if event is not None:
        from defender import tasks  # the tasks call this module

        background.submit(tasks.notify_health, integration.pk, event)


# --- notifying ------------------------------------------------------------------------------------------------------


def notify_health(integration_id: int, event: str) -> None:
    """Tell the integration's email addresses and webhook that it went down (``event`` "down") or recovered ("up").
    A notification that cannot be sent is logged, never raised: it must not break the Test that caused it."""
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None or event not in (DOWN, UP):
        return
    notice = notice_for(integration, event)
    recipients = email_addresses(integration.notify_emails)
    if recipients:
        try:
            send_mail(_subject(notice), _email_body(notice), None, recipients)
        except Exception as error:  # SMTP refusals, DNS, TLS: whatever the mail backend raises
            logger.warning(
                "The %s notification email for integration %s could not be sent: %s",
                event,
                integration.pk,
                type(error).__name__,
            )
    webhook = str(integration.notify_webhook_url or "")
    if webhook:
        try:
            notify.post_webhook(webhook, notice)
        except notify.NotificationFailed as failure:
            # Never the URL: it is the webhook's credential.
            logger.warning("The %s webhook notification for integration %s failed: %s", event, integration.pk, failure)


def notice_for(integration: Integration, event: str) -> notify.Notice:
    """What the notification says: for a Test that went down, the step that failed and its message."""
    link = settings.SITE_URL + reverse("defender:integration-detail", args=[integration.pk])
    if event == UP:
        text = f"{integration.name} has recovered: its Test passed again."
        return notify.Notice(text, integration.name, UP, failed_step="", advice="", url=link)
    failed = next((step for step in integration.last_test_steps if step.get("outcome") == FAILED), None)
    step = str(failed.get("name", "")) if failed else ""
    advice = str(failed.get("message", "")) if failed else integration.last_test_summary
    count = integration.consecutive_failures
    tests = f"{count} Tests in a row" if count != 1 else "its Test"
    what = f"{step} failed" if step else "the Test failed"
    text = f"{integration.name} is down: {what} ({tests}). {advice}".strip()
    return notify.Notice(text, integration.name, DOWN, failed_step=step, advice=advice, url=link)


def _subject(notice: notify.Notice) -> str:
    return f"{notice.integration} is {'down' if notice.state == DOWN else 'up again'}"


def _email_body(notice: notify.Notice) -> str:
    lines = [notice.text, ""]
    if notice.failed_step:
        lines += [f"Failed step: {notice.failed_step}", f"Advice: {notice.advice}", ""]
    lines.append(f"Integration: {notice.url}")
    return "\n".join(lines) + "\n"


def email_addresses(text: str) -> list[str]:
    """The addresses typed one per line or comma-separated (or separated by semicolons, as mail programs copy them)."""
    return [part.strip() for part in text.replace(";", ",").replace("\n", ",").split(",") if part.strip()]


# --- the schedule ---------------------------------------------------------------------------------------------------


def schedule_minutes(integration: Integration) -> int | None:
    """Every how many minutes the integration is tested: None when it is not scheduled (or its schedule is not an
    interval, see ``schedule_note``). An interval an administrator set in another unit gives the nearest minutes."""
    return interval_minutes(_task_of(integration))


def interval_minutes(task: PeriodicTask | None) -> int | None:
    """Every how many whole minutes (at least one) an enabled interval task runs; None for any other task."""
    if task is None or not task.enabled or task.interval is None:
        return None
    seconds = float(task.interval.every) * SECONDS_PER_PERIOD.get(str(task.interval.period), 60)
    return max(1, round(seconds / 60))


def schedule_note(integration: Integration) -> str:
    """What the form says beside the minutes when the Django admin set a schedule the field cannot show exactly."""
    task = _task_of(integration)
    if task is None or not task.enabled:
        return ""
    if task.interval is None:
        return "The Django admin sets this schedule (not an interval); a number here replaces it."
    if task.interval.period != IntervalSchedule.MINUTES:
        minutes = schedule_minutes(integration)
        return (
            f"The Django admin sets this schedule to every {task.interval.every} {task.interval.period}; shown as "
            f"{minutes} minutes. Saving another number replaces it."
        )
    return ""


def set_schedule(integration: Integration, minutes: int | None) -> None:
    """Test the integration every ``minutes`` minutes; 0 or None turns the schedule off (its periodic task goes).
    The same number as now keeps the schedule as it is (an administrator's interval of 90 seconds stays)."""
    with transaction.atomic():
        task = _task_of(integration)
        if not minutes:
            if task is not None:
                task.delete()  # the integration's link is set to null with it
            integration.health_check = None
            return
        name = schedule_name(integration)
        if task is None:
            interval = _interval(minutes)
            task = PeriodicTask.objects.create(
                name=name, task=SCHEDULED_TASK, interval=interval, args=json.dumps([integration.pk])
            )
            Integration.objects.filter(pk=integration.pk).update(health_check=task)
            integration.health_check = task
            return
        if minutes != schedule_minutes(integration):
            task.interval, task.crontab, task.solar, task.clocked = _interval(minutes), None, None, None
        task.name, task.task, task.args, task.enabled = name, SCHEDULED_TASK, json.dumps([integration.pk]), True
        task.save()


def schedule_name(integration: Integration) -> str:
    """Readable in the Django admin, and unique (PeriodicTask names are) by the integration's id."""
    suffix = f" (integration {integration.pk})"
    return f"Health check: {integration.name}"[: 200 - len(suffix)] + suffix


def forget_schedule(integration_id: int) -> None:
    """An integration that is no more: its periodic task goes too (its scheduled Test would find nothing to do)."""
    PeriodicTask.objects.filter(task=SCHEDULED_TASK, args=json.dumps([integration_id])).delete()


def integration_deleted(sender: Any, instance: Integration, **kwargs: Any) -> None:
    """post_delete of an Integration: its periodic task goes with it (the link points from the integration)."""
    if instance.health_check_id is not None:
        PeriodicTask.objects.filter(pk=instance.health_check_id).delete()


def _interval(minutes: int) -> IntervalSchedule:
    interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period=IntervalSchedule.MINUTES)
    return interval


def _task_of(integration: Integration) -> PeriodicTask | None:
    if integration.health_check_id is None:
        return None
    return PeriodicTask.objects.select_related("interval").filter(pk=integration.health_check_id).first()


# --- history --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """An integration's last finished Tests, oldest first, for the status strip."""

    runs: list[TestRun]

    @property
    def passed(self) -> int:
        return sum(1 for run in self.runs if run.verdict == "passed")

    @property
    def summary(self) -> str:
        if not self.runs:
            return "No Test has run yet."
        return f"{self.passed} of {len(self.runs)} passed"


def history(integration: Integration, limit: int = HISTORY_LENGTH) -> History:
    """The last ``limit`` finished Tests of the integration (pressed, scheduled or from a command), in one query. A
    cancelled run (no verdict) is no outcome and is left out."""
    runs: Any = (
        TestRun.objects.filter(integration=integration, subject=TestRun.Subject.INTEGRATION, finished_at__isnull=False)
        .exclude(verdict="")
        .only("pk", "trigger", "finished_at", "verdict", "summary")
        .order_by("-finished_at")[:limit]
    )
    return History(list(reversed(list(runs))))
