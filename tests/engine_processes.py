"""Real engine processes for the tests: Celery workers (and beat, gunicorn) started as the Procfile starts them, on
the machine's Redis (database 5, flushed first) and the suite's own test database."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/5"
# Low, so that a task whose worker was killed goes to another worker within seconds (kombu's Redis transport
# restores unacknowledged messages this long after they were delivered); the settings refuse less than 10.
VISIBILITY_TIMEOUT = 10


def redis_or_skip(url=REDIS_URL):
    """A Redis database (default 5), emptied: nothing a previous run left behind is delivered to this one."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"No Redis at {url}: start redis-server (.ci/run starts it when it is not running).")
    client.flushdb()
    return client


def suite_database_url():
    """A DATABASE_URL that reaches the database the suite runs on (its test database), for another process."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # The suite's test database is a file (tests/conftest.py), which another process can open.
        return f"sqlite:///{database['NAME']}"
    given = urlsplit(os.environ["DATABASE_URL"])
    return urlunsplit(given._replace(path=f"/{database['NAME']}"))


def is_postgresql():
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def environment(tmp_path, **extra):
    """The environment of a site process: the test database, Redis db 5, the keys this process encrypted with."""
    from django.conf import settings

    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": suite_database_url(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "SECRET_KEY": settings.SECRET_KEY,
            "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
            "VAR_DIR": str(tmp_path / "var"),
            "TASKS_RUN_INLINE": "false",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


class Process:
    """A process in a session of its own, so that killing it kills its children (a prefork worker's pool) too; its
    output goes to a file, shown when a test fails."""

    def __init__(self, name, command, env, tmp_path):
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("w")
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def log(self):
        return self.log_path.read_text(errors="replace")

    def kill(self):
        """SIGKILL to the process and its children at once: nothing is acknowledged or tidied up."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self, timeout=30):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def celery(*arguments):
    return [sys.executable, "-m", "celery", "-A", "integrations_site", *arguments]


def worker_command(name, concurrency=1):
    # Prefork, as the Procfile runs it: the pool's processes are the ones a SIGKILL must reach.
    return celery(
        "worker",
        "--hostname",
        f"{name}@%h",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    )


@contextmanager
def logs_on_failure(*processes):
    """Print the processes' output when the block fails, for CI's log."""
    try:
        yield processes
    except BaseException:
        for process in processes:
            sys.stderr.write(f"\n----- {process.name} -----\n{process.log[-20000:]}\n")
        raise


@contextmanager
def running(*processes):
    """Stop every process at the end; print their output when the block failed."""
    try:
        with logs_on_failure(*processes):
            yield processes
    finally:
        for process in processes:
            process.stop()


@contextmanager
def site_sends_to_redis():
    """The test process's Celery app sends to Redis db 5 (the suite's own broker is in memory), as the site does with
    CELERY_BROKER_URL set; back to memory afterwards."""
    from integrations_site.celery import app

    before = app.conf.broker_url, app.conf.broker_transport_options
    _forget_connections(app)
    app.conf.broker_url = REDIS_URL
    app.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
    try:
        yield app
    finally:
        _forget_connections(app)
        app.conf.broker_url, app.conf.broker_transport_options = before


def _forget_connections(app):
    """Let go of the app's connection pool and producer pool, which keep the broker they were made for: a task sent
    next takes a producer for the broker configured now (kombu keeps one per broker, so none is closed here).
    ``app.close()`` leaves the producer pool: after any earlier test had sent a task, tasks would still go to the
    old broker."""
    app._pool = None
    app.amqp._producer_pool = None


def wait_until(condition, timeout=120, what="the condition", every=0.1):
    """Poll ``condition`` until it is true; fail naming ``what`` after ``timeout`` seconds (generous: CI is slow)."""
    give_up = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > give_up:
            raise AssertionError(f"{what}: still not so after {timeout} s")
        time.sleep(every)
