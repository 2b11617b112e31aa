"""gunicorn's settings for the site: `gunicorn integrations_site.wsgi -c integrations_site/gunicorn.conf.py`.

Read from the environment (README, Production):
- PORT (default 8000): the site listens on 0.0.0.0:PORT; BIND (e.g. 127.0.0.1:8000, or unix:/run/site.sock)
  takes its place when set.
- WEB_CONCURRENCY (default 2, one per core of the 2-core machines it is sized for): worker processes.
- GUNICORN_THREADS (default 8): threads per worker process, each serving one request at a time.
- GUNICORN_TIMEOUT (default 60): seconds a worker may go silent before it is killed and replaced.
"""

import os


def _positive(name: str, default: int) -> int:
    value = int(os.environ.get(name, default))
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}.")
    return value


# Threads, not the default sync workers: remote nodes long-poll their check-in for up to 25 s, and a sync worker
# would be held by each waiting node. A gthread worker gives a waiting node one of its threads; the other threads
# go on serving pages. Each node holds at most one thread, so keep WEB_CONCURRENCY x GUNICORN_THREADS above the
# number of nodes plus the people using the site at once. Tests and Get alerts run in the Celery worker, never
# in these threads.
worker_class = "gthread"
workers = _positive("WEB_CONCURRENCY", 2)
threads = _positive("GUNICORN_THREADS", 8)
# Above the 25 s long poll with a margin: a worker that stops answering its arbiter for this long is replaced.
timeout = _positive("GUNICORN_TIMEOUT", 60)
# A stop (deploy, restart) lets the check-ins being held finish or be answered "nothing waiting".
graceful_timeout = 30
# Behind a load balancer that keeps connections open to the site.
keepalive = 5

bind = [os.environ.get("BIND") or f"0.0.0.0:{_positive('PORT', 8000)}"]

# Requests to stderr, without their query strings: gunicorn's default line logs the request line ("%(r)s") and the
# Referer, both with the query string, and a query string may carry what must never be logged. The path only
# (%(U)s), the status, the size, the time taken in milliseconds and the user agent.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Django's settings are read once in the arbiter, so that a setting that stops start-up (a missing SECRET_KEY with
# DEBUG off) stops gunicorn with that message rather than each worker over and over.
preload_app = True
