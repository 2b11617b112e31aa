"""/healthz and /readyz: what a load balancer or an orchestrator asks, without signing in, and what it is told."""

import json
import socket
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from defender.models import Worker
from tests.test_settings import PRODUCTION, get_in_a_fresh_process

BROKER_PASSWORD = "broker-password-not-real"


def fresh_worker(seen_ago=timedelta(seconds=5), hostname="celery@worker-7.internal"):
    now = timezone.now()
    return Worker.objects.create(
        hostname=hostname,
        version="5.7.0",
        pid=4242,
        concurrency=4,
        started_at=now - timedelta(hours=1),
        last_seen_at=now - seen_ago,
    )


@pytest.fixture
def broker_at(celery_in_memory):
    """Point the site's Celery app at another broker for one test, then back at the suite's memory broker."""
    before = celery_in_memory.conf.broker_url

    def point(url):
        celery_in_memory.conf.broker_url = url

    yield point
    celery_in_memory.conf.broker_url = before


def redis_available():
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


# /healthz


@pytest.mark.django_db
def test_healthz_answers_ok_without_signing_in_and_reads_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Content-Type"].startswith("text/plain")
    assert response["Cache-Control"] == "no-store"
    assert "sessionid" not in response.cookies


def test_healthz_answers_head_and_refuses_post(client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


# /readyz


@pytest.mark.django_db
def test_readyz_is_503_while_no_worker_has_reported(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True, "waiting": 0}
    assert body["checks"]["workers"] == {
        "ok": False,
        "problem": "No worker has reported in the last 60 seconds.",
        "online": 0,
    }


@pytest.mark.django_db
def test_readyz_is_200_with_a_fresh_worker_and_a_reachable_broker_and_names_no_host(client):
    fresh_worker()
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "ok": True,
        "checks": {
            "database": {"ok": True},
            "broker": {"ok": True, "waiting": 0},
            "workers": {"ok": True, "online": 1},
        },
    }
    assert b"worker-7" not in response.content
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_a_worker_silent_for_over_a_minute_does_not_count(client):
    fresh_worker(seen_ago=timedelta(seconds=61))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["online"] == 0


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_refuses_and_never_shows_its_password(client, broker_at, closed_port):
    fresh_worker()
    broker_at(f"redis://:{BROKER_PASSWORD}@127.0.0.1:{closed_port}/4")
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 10  # refused at once: no retries, no back-off
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {
        "ok": False,
        "problem": "The broker could not be reached (OperationalError).",
    }
    assert response.json()["checks"]["workers"]["ok"] is True
    assert BROKER_PASSWORD not in response.content.decode()
    assert str(closed_port) not in response.content.decode()


@pytest.mark.django_db
def test_readyz_gives_up_on_a_broker_that_never_answers_within_its_timeout(client, broker_at, silent_listener):
    """A load balancer gives up after a few seconds: a broker that accepts and says nothing must not hold the probe."""
    fresh_worker()
    broker_at(f"redis://127.0.0.1:{silent_listener.port}/4")
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 10  # its 2 s socket timeout, not Redis's own (none)
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["ok"] is False


@pytest.mark.django_db
@pytest.mark.skipif(not redis_available(), reason="no Redis on 127.0.0.1:6379")
def test_readyz_is_200_on_the_machines_redis(client, broker_at):
    fresh_worker()
    broker_at("redis://127.0.0.1:6379/4")
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["broker"]["ok"] is True


@pytest.mark.django_db
def test_readyz_refuses_post(client):
    assert client.post("/readyz").status_code == 405


# A real process with production settings (DEBUG off), as a load balancer meets it.


def test_with_debug_off_a_plain_http_probe_is_answered_not_redirected(tmp_path, closed_port):
    """The site redirects plain HTTP to HTTPS, except these two: a probe straight to the process has no TLS. With the
    database and the broker unreachable, /healthz still answers and /readyz says what is down, passwords unsaid."""
    environment = {
        **PRODUCTION,
        "DATABASE_URL": f"postgres://director:db-password-not-real@127.0.0.1:{closed_port}/director",
        "CELERY_BROKER_URL": f"redis://:{BROKER_PASSWORD}@127.0.0.1:{closed_port}/4",
    }
    answers = get_in_a_fresh_process(["/healthz", "/readyz", "/accounts/login/"], environment, tmp_path)
    healthz, readyz, login = answers
    assert (healthz["status"], healthz["body"]) == (200, "ok")
    assert readyz["status"] == 503
    checks = json.loads(readyz["body"])["checks"]
    assert checks["database"] == {"ok": False, "problem": "The database could not be reached (OperationalError)."}
    assert checks["broker"]["ok"] is False
    assert checks["workers"] == {"ok": False, "problem": "Not known: the database could not be reached."}
    assert "password-not-real" not in readyz["body"]
    # Every other page still goes to HTTPS.
    assert login["status"] == 301 and login["location"].startswith("https://")


def test_a_probe_must_name_a_host_the_site_answers_to(client):
    """As every page: the README tells how to give a probe its Host header."""
    assert client.get("/healthz", HTTP_HOST="10.0.3.7:8000").status_code == 400
