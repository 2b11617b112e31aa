"""Where work that outlives a web request runs: one function, so that a task queue can take its place.

Today a small pool of threads in the site's process; each task closes its database connections when done, since a
thread of the pool is not a request that Django tidies after.
"""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="background")


def submit(task: Callable[..., Any], *args: Any) -> None:
    """Run ``task(*args)`` in the background, or right now when TEST_RUNS_INLINE is on."""
    if settings.TEST_RUNS_INLINE:
        task(*args)
        return
    _pool.submit(_run, task, args)


def _run(task: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        task(*args)
    except Exception:
        logger.exception("A background task (%s) broke", getattr(task, "__name__", task))
    finally:
        connections.close_all()
