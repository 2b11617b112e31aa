"""The Celery app: the background engine that runs Tests, Get alerts and the periodic work.

Configured from Django's settings (the ``CELERY_`` names, read from the environment in settings.py). The worker
keeps the site's logging (every handler masks secrets) instead of installing Celery's own, and records a heartbeat
in the database so that /readyz and Settings > System know which workers are alive, whatever the broker.
"""

import os
from typing import Any

from celery import Celery, bootsteps
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings")

app = Celery("integrations_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def keep_the_sites_logging(**kwargs: Any) -> None:
    """Connected, so Celery leaves logging as Django's LOGGING set it: with the filters that mask secrets."""


class Heartbeat(bootsteps.StartStopStep):
    """Every few seconds, the worker says it is alive (hostname, version, concurrency) in the database."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.timer_ref: Any = None

    def start(self, worker: Any) -> None:
        from defender.operations import engine

        engine.worker_alive(worker.hostname, worker.concurrency)
        self.timer_ref = worker.timer.call_repeatedly(
            engine.HEARTBEAT_SECONDS, engine.worker_alive, (worker.hostname, worker.concurrency), priority=10
        )

    def stop(self, worker: Any) -> None:
        from defender.operations import engine

        if self.timer_ref is not None:
            self.timer_ref.cancel()
        engine.worker_stopped(worker.hostname)


app.steps["worker"].add(Heartbeat)
