"""Where work that outlives a web request goes: one function, so that every use case queues work the same way.

A Celery task is sent once the transaction that recorded what was asked has committed (a worker must find the run or
job it is given). With TASKS_RUN_INLINE on (tests that run inside one transaction), the task runs right here. A
management command runs its own work in the foreground (``in_this_process``): it needs no worker.
"""

import threading
from typing import Any

from django.conf import settings
from django.db import connections, transaction


def submit(task: Any, *args: Any, time_limit: float | None = None, in_this_process: bool = False) -> None:
    """Queue ``task(*args)`` for a worker, or run it now when TASKS_RUN_INLINE is on, or in a thread of this process.
    Arguments are ids, never secrets: the broker and the worker's log see them. ``time_limit``: seconds after which
    the task is told to stop (a soft limit it can report), and killed a little later."""
    if settings.TASKS_RUN_INLINE:
        task.apply(args=args, throw=True)
    elif in_this_process:
        threading.Thread(target=_run_in_thread, args=(task, args), daemon=True).start()
    else:
        limits = {} if time_limit is None else {"soft_time_limit": time_limit, "time_limit": time_limit + 15}
        transaction.on_commit(lambda: task.apply_async(args=args, **limits))


def _run_in_thread(task: Any, args: tuple[Any, ...]) -> None:
    try:
        task.apply(args=args, throw=True)
    finally:
        connections.close_all()  # a thread is not a request that Django tidies after
