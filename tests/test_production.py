"""The production set, started for real as the README's Production section starts it: collectstatic, gunicorn with
integrations_site/gunicorn.conf.py, a Celery worker and beat, on PostgreSQL and Redis, DEBUG off. Chromium logs in,
presses Test and Get alerts against the simulator and sees their results; the stylesheets come from whitenoise.

gunicorn serves HTTPS itself here (a certificate of a test CA), so that the production settings stay as they are:
SECURE_SSL_REDIRECT on and the session and CSRF cookies Secure, with no reverse proxy to trust.
Select it with `-m production`.
"""

import csv
import io
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import requests
import trustme
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from defender.demo import DEMO_ACTORS, DEMO_INTEGRATION, seed_demo
from defender.models import Alert, TestRun
from tests.conftest import PASSWORD
from tests.engine_processes import (
    ROOT,
    Process,
    celery,
    environment,
    is_postgresql,
    logs_on_failure,
    redis_or_skip,
    running,
    wait_until,
    worker_command,
)
from tests.factories import TENANT_ID, make_actor
from tests.fixtures.browser import page_in_new_context

pytestmark = [pytest.mark.production, pytest.mark.browser, pytest.mark.timeout(600)]

# A query string that must never reach a log line.
SECRET_QUERY = "client_secret=never-logged-7f3a"
# Generous: a cold worker on a busy 2-core machine.
WAIT = 60_000


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_site(tmp_path, **settings):
    """gunicorn with the site's config, serving HTTPS on a free port: its URL, CA file, process and environment."""
    ca = trustme.CA()
    ca_path, certificate, key = tmp_path / "ca.pem", tmp_path / "site.pem", tmp_path / "site.key"
    ca.cert_pem.write_to_path(str(ca_path))
    issued = ca.issue_cert("127.0.0.1", "localhost")
    issued.cert_chain_pems[0].write_to_path(str(certificate))
    issued.private_key_pem.write_to_path(str(key))
    port = free_port()
    env = environment(
        tmp_path,
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STATIC_ROOT=str(tmp_path / "static"),
        BIND=f"127.0.0.1:{port}",
        **settings,
    )
    manage = [sys.executable, "manage.py"]
    # As the README's start: the database is migrated already (it is the suite's), so migrate only checks.
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([*manage, *command], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "integrations_site.wsgi",
        "--config",
        "integrations_site/gunicorn.conf.py",
    ]
    site = Process("gunicorn", [*command, "--certfile", str(certificate), "--keyfile", str(key)], env, tmp_path)
    return f"https://127.0.0.1:{port}", ca_path, site, env


def production_or_skip():
    if not is_postgresql():
        pytest.skip("The production set runs on PostgreSQL: set DATABASE_URL=postgres://... (CI runs the suite so).")
    redis_or_skip()


@pytest.fixture
def production(transactional_db, simulator, admin_user, tmp_path):
    """The site as production runs it, on the suite's PostgreSQL test database and Redis db 5; its URL and CA."""
    production_or_skip()
    seed_demo(simulator)
    url, ca_path, site, env = gunicorn_site(
        tmp_path, WEB_CONCURRENCY="2", GUNICORN_THREADS="4", REMOTE_JOB_HOUSEKEEPING_SECONDS="2"
    )
    worker = Process("worker", worker_command("worker", concurrency=2), env, tmp_path)
    beat = Process("beat", celery("beat", "--loglevel", "INFO"), env, tmp_path)
    with running(site, worker, beat):
        wait_until(lambda: answers(f"{url}/accounts/login/", ca_path), timeout=120, what="gunicorn answering")
        yield url, ca_path, site, worker, beat


def answers(url, ca_path):
    try:
        return requests.get(url, verify=str(ca_path), timeout=5, allow_redirects=False).status_code == 200
    except requests.RequestException:
        return False


def test_the_production_set_serves_test_get_alerts_and_static_files(production, browser, request, admin_user):
    url, ca_path, site, worker, beat = production
    with logs_on_failure(site, worker, beat):
        check_the_production_set(url, ca_path, site, worker, browser, request, admin_user)


def check_the_production_set(url, ca_path, site, worker, browser, request, admin_user):
    options = {"ignore_https_errors": True, "viewport": {"width": 1400, "height": 1000}}
    with page_in_new_context(browser, request, **options) as page:
        page.set_default_timeout(WAIT)
        page.goto(f"{url}/accounts/login/?next=/&{SECRET_QUERY}")
        page.get_by_label("Username").fill(admin_user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda address: "/accounts/login/" not in address)

        row = page.get_by_role("row", name=re.compile(re.escape(DEMO_INTEGRATION)))
        row.get_by_role("button", name="Test").click()
        expect(page.get_by_text("The Test passed.")).to_be_visible(timeout=WAIT)

        page.goto(f"{url}/actors/")
        page.get_by_role("link", name=DEMO_ACTORS[0][0]).click()
        page.get_by_label("Last 30 days").check()
        page.get_by_role("button", name="Get alerts").click()
        expect(page.locator("#alerts-table tbody tr").first).to_be_visible(timeout=WAIT)

        stylesheets = page.locator("link[rel=stylesheet]").evaluate_all("links => links.map(link => link.href)")

    assert TestRun.objects.get().finished
    assert Alert.objects.exists()
    # collectstatic's hashed names, served by whitenoise with a year's caching: a release brings new names.
    console_css = next(href for href in stylesheets if "/static/css/console." in href)
    assert re.search(r"/static/css/console\.[0-9a-f]{12}\.css$", console_css), console_css
    css = requests.get(console_css, verify=str(ca_path), timeout=10)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "max-age=315360000" in css.headers["Cache-Control"]
    # The worker ran what the pages queued, and what beat scheduled.
    wait_until(lambda: "remote_job_housekeeping" in worker.log, timeout=60, what="beat's housekeeping, run")
    assert "defender.tasks.run_test" in worker.log and "defender.tasks.get_alerts" in worker.log
    # gunicorn's access log names the paths asked, never their query strings.
    assert '"GET /accounts/login/ ' in site.log
    assert "never-logged" not in site.log and "next=" not in site.log


# The worker timeout of the export test, and how long its reader takes at least: several timeouts.
SHORT_TIMEOUT = 2
READ_FOR_AT_LEAST = 4 * SHORT_TIMEOUT


def test_a_csv_export_that_streams_for_longer_than_the_worker_timeout_arrives_whole(
    transactional_db, admin_user, tmp_path
):
    production_or_skip()
    actor = make_actor()
    created = timezone.now()
    # Long titles make a CSV of several MB, more than the sockets' buffers hold, so the worker's thread is still
    # streaming while the reader below takes its time.
    Alert.objects.bulk_create(
        Alert(
            tenant_id=TENANT_ID,
            actor=actor,
            alert_id=f"da{number:06}",
            title=f"Alert {number:06}",
            evidence=[{"entity_type": "Process", "command_line": f"powershell.exe -enc {'A' * 1500}"}],
            created=created - timedelta(seconds=number),
            first_seen_at=created,
            updated_at=created,
        )
        for number in range(EXPORTED)
    )
    client = Client()
    client.force_login(admin_user)
    session = client.cookies["sessionid"].value
    url, ca_path, site, _ = gunicorn_site(
        tmp_path, WEB_CONCURRENCY="1", GUNICORN_THREADS="2", GUNICORN_TIMEOUT=str(SHORT_TIMEOUT)
    )
    with running(site), logs_on_failure(site):
        wait_until(lambda: answers(f"{url}/accounts/login/", ca_path), timeout=120, what="gunicorn answering")
        started = time.monotonic()
        body = slowly_read(f"{url}/actors/{actor.pk}/alerts.csv?period=all", ca_path, session, READ_FOR_AT_LEAST)
        took = time.monotonic() - started
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "Created (UTC)"
    assert len(rows) == EXPORTED + 1
    assert rows[-1][10] == f"da{EXPORTED - 1:06}"  # the oldest, last: nothing was cut off
    assert took >= READ_FOR_AT_LEAST  # the stream did outlast the worker timeout, several times over
    assert "WORKER TIMEOUT" not in site.log


EXPORTED = 20_000


def slowly_read(url, ca_path, session, seconds):
    """The body of a GET, read 64 KiB at a time at about 3 MB/s, like a download on a slow link (the export's 30 MB
    take about ten seconds: far more than the sockets' buffers hold)."""
    pieces = []
    with requests.get(url, verify=str(ca_path), cookies={"sessionid": session}, stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text[:500]
        for piece in response.iter_content(chunk_size=65_536):
            pieces.append(piece)
            time.sleep(0.02)
    return b"".join(pieces).decode("utf-8")
