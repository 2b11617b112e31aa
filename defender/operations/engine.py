"""The background engine as the site sees it: which workers are alive, and how many tasks wait for one.

Workers say they are alive in the database (``integrations_site.celery.Heartbeat``), which works on every broker,
the embedded one included; the queue's length is asked of the broker itself.
"""

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import celery
from django.db import connections
from django.db.models import QuerySet
from django.utils import timezone

from defender.models import Worker

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
# A worker not heard from for this long counts as gone (four heartbeats missed).
ONLINE_SECONDS = 60


def worker_alive(hostname: str, concurrency: int) -> None:
    """Record that this worker is alive now (called by the worker every HEARTBEAT_SECONDS)."""
    now = timezone.now()
    try:
        Worker.objects.update_or_create(
            hostname=hostname,
            defaults={
                "version": celery.__version__,
                "pid": os.getpid(),
                "concurrency": concurrency,
                "last_seen_at": now,
            },
            create_defaults={
                "version": celery.__version__,
                "pid": os.getpid(),
                "concurrency": concurrency,
                "started_at": now,
                "last_seen_at": now,
            },
        )
    except Exception:
        # A database that is down for a moment must not stop the worker; /readyz shows it meanwhile.
        logger.warning("Could not record the worker's heartbeat", exc_info=True)
    finally:
        connections.close_all()


def worker_stopped(hostname: str) -> None:
    try:
        Worker.objects.filter(hostname=hostname).delete()
    except Exception:
        logger.warning("Could not record that the worker stopped", exc_info=True)
    finally:
        connections.close_all()


def online_workers() -> QuerySet[Worker]:
    return Worker.objects.filter(last_seen_at__gte=timezone.now() - timedelta(seconds=ONLINE_SECONDS))


@dataclass(frozen=True)
class Queue:
    """The broker's answer: how many tasks wait, or why it could not be asked."""

    waiting: int | None
    problem: str = ""


def queue() -> Queue:
    """How many tasks wait in the default queue, asked of the broker (a short timeout: a page and /readyz ask)."""
    from integrations_site.celery import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            channel: Any = connection.default_channel  # every kombu channel declares queues; the stubs say less
            declared = channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return Queue(int(declared.message_count))
    except Exception as error:
        # A queue that no task has ever been sent to does not exist yet: nothing waits.
        if "NOT_FOUND" in str(error) or "no queue" in str(error).lower():
            return Queue(0)
        logger.warning("The broker could not be asked for its queue: %s", type(error).__name__)
        return Queue(None, f"The broker could not be reached ({type(error).__name__}).")
