"""The background engine as the site sees it: which workers are alive, and how many tasks wait for one.

Workers say they are alive in the database (``integrations_site.celery.Heartbeat``), which works on every broker,
the embedded one included; the queue's length is asked of the broker itself.
"""

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import celery
from django.db import connection, connections
from django.db.models import QuerySet
from django.utils import timezone

from defender.models import Worker

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
# A worker not heard from for this long counts as gone (four heartbeats missed).
ONLINE_SECONDS = 60
# How long the broker may take to answer a page or /readyz: a load balancer asks often and gives up after a few
# seconds, so a broker that does not answer is reported as a problem well within that.
BROKER_TIMEOUT_SECONDS = 2.0


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


def queue(timeout: float = BROKER_TIMEOUT_SECONDS) -> Queue:
    """How many tasks wait in the default queue, asked of the broker within ``timeout`` seconds.

    One attempt, not Celery's retries: a page and /readyz want the answer now. The socket timeouts bound a broker
    that accepts the connection and then says nothing (Redis's own defaults wait for ever); transports without
    sockets ignore them.
    """
    from integrations_site.celery import app

    socket_timeouts = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    try:
        with app.connection_for_read(transport_options=socket_timeouts) as broker:
            broker.ensure_connection(max_retries=0, timeout=math.ceil(timeout))
            channel: Any = broker.default_channel  # every kombu channel declares queues; the stubs say less
            declared = channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return Queue(int(declared.message_count))
    except Exception as error:
        # A queue that no task has ever been sent to does not exist yet: nothing waits.
        if "NOT_FOUND" in str(error) or "no queue" in str(error).lower():
            return Queue(0)
        # The error's type only: its message may carry the broker's URL, password included.
        logger.warning("The broker could not be asked for its queue: %s", type(error).__name__)
        return Queue(None, f"The broker could not be reached ({type(error).__name__}).")


@dataclass(frozen=True)
class Check:
    """One part of /readyz: fine, or what is wrong in words that name no host, user or password."""

    ok: bool
    problem: str = ""
    detail: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, **({"problem": self.problem} if self.problem else {}), **self.detail}


@dataclass(frozen=True)
class Readiness:
    database: Check
    broker: Check
    workers: Check

    @property
    def ok(self) -> bool:
        return self.database.ok and self.broker.ok and self.workers.ok

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checks": {name: getattr(self, name).as_json() for name in ("database", "broker", "workers")},
        }


def database_check() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        logger.warning("The database could not be reached: %s", type(error).__name__)
        return Check(False, f"The database could not be reached ({type(error).__name__}).")
    return Check(True)


def broker_check(timeout: float = BROKER_TIMEOUT_SECONDS) -> Check:
    waiting = queue(timeout)
    if waiting.waiting is None:
        return Check(False, waiting.problem)
    return Check(True, detail={"waiting": waiting.waiting})


def workers_check() -> Check:
    try:
        online = online_workers().count()
    except Exception as error:
        logger.warning("The workers' heartbeats could not be read: %s", type(error).__name__)
        return Check(False, f"The workers' heartbeats could not be read ({type(error).__name__}).")
    if not online:
        return Check(False, f"No worker has reported in the last {ONLINE_SECONDS} seconds.", {"online": 0})
    return Check(True, detail={"online": online})


def readiness(broker_timeout: float = BROKER_TIMEOUT_SECONDS) -> Readiness:
    """Can the site do its work: the database answers, the broker answers, and a worker is alive to run tasks."""
    database = database_check()
    # Workers report in the database: without it, whether any is alive is unknown, and asking again would only wait.
    workers = workers_check() if database.ok else Check(False, "Not known: the database could not be reached.")
    return Readiness(database=database, broker=broker_check(broker_timeout), workers=workers)
