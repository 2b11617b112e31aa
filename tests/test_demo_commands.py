"""run_simulator and run_demo: what a new user reads when they start, and a friendly word when a port is taken."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def taken_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_run_simulator_on_a_taken_port_says_which_port_and_how_to_pick_another(taken_port, tmp_path):
    with pytest.raises(CommandError) as raised:
        call_command("run_simulator", "--port", str(taken_port), "--ca-path", str(tmp_path / "ca.pem"))
    message = str(raised.value)
    assert f"127.0.0.1:{taken_port}" in message
    assert "--port" in message


def _demo_environment(tmp_path):
    """As on a new machine: no database server, no broker (the embedded one, in a var/ folder of its own)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    environment["VAR_DIR"] = str(tmp_path / "var")
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def _read_until(process, needle, timeout=60):
    """The demo's output up to the line that holds ``needle`` (the demo keeps running, so read line by line)."""
    lines, give_up = [], time.monotonic() + timeout
    while time.monotonic() < give_up:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return "".join(lines)
    raise AssertionError(f"{needle!r} never printed; got:\n{''.join(lines)}")


def test_run_demo_prints_what_to_type_for_a_second_integration(tmp_path):
    environment = _demo_environment(tmp_path)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=environment, check=True, capture_output=True)
    demo = subprocess.Popen(
        [*manage, "run_demo", "127.0.0.1:0", "--simulator-port", "0", "--siem-port", "0"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _read_until(demo, "Actor hostnames with alerts")
    finally:
        demo.terminate()
        demo.wait(timeout=15)
    assert "Client Secret:" in output
    assert "CA certificate: paste the contents of" in output
    assert "simulator-ca.pem" in output
    assert "Legacy SIEM API integration" in output


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _csrf(page):
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def _poll(fetch, done, timeout=90):
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        page = fetch()
        if done(page):
            return page
        time.sleep(0.25)
    raise AssertionError(f"not done after {timeout} s; last page:\n{page[:3000]}")


def test_the_demo_runs_test_and_get_alerts_through_its_embedded_worker(tmp_path):
    """``make demo`` on a new machine: the site, the simulator and a worker on the embedded broker, no server."""
    environment = _demo_environment(tmp_path)
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=environment, check=True, capture_output=True)
    admin = subprocess.run(
        [*manage, "ensure_demo_admin"], cwd=ROOT, env=environment, check=True, capture_output=True, text=True
    ).stdout
    password = re.search(r"password:\s+(\S+)", admin).group(1)
    port = _free_port()
    demo = subprocess.Popen(
        [*manage, "run_demo", f"127.0.0.1:{port}", "--simulator-port", "0", "--siem-port", "0"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    site = f"http://127.0.0.1:{port}"
    try:
        _read_until(demo, "Actor hostnames with alerts")
        browser = requests.Session()
        login = _poll(
            lambda: _get_or_empty(browser, f"{site}/accounts/login/"), lambda page: "csrfmiddlewaretoken" in page
        )
        browser.post(
            f"{site}/accounts/login/",
            {"username": "admin", "password": password, "csrfmiddlewaretoken": _csrf(login)},
            timeout=30,
        ).raise_for_status()
        listing = browser.get(f"{site}/settings/integrations/", timeout=30).text
        integration = re.search(r"/settings/integrations/(\d+)/test/", listing).group(1)
        token = {"X-CSRFToken": browser.cookies["csrftoken"]}

        pressed = browser.post(f"{site}/settings/integrations/{integration}/test/", headers=token, timeout=30)
        run = _poll(lambda: browser.get(pressed.url, timeout=30).text, lambda page: "The Test " in page)
        assert "The Test passed." in run

        actors = browser.get(f"{site}/actors/", timeout=30).text
        actor = re.search(r'href="/actors/(\d+)/"', actors).group(1)
        data = {"integrations": [integration], "window": "30d"}
        browser.post(f"{site}/actors/{actor}/alerts/", data, headers=token, timeout=30).raise_for_status()
        page = _poll(
            lambda: browser.get(f"{site}/actors/{actor}/", timeout=30).text,
            lambda page: "Waiting for a worker" not in page and "Asking " not in page,
        )
        assert re.search(r"\d+ stored alerts? on ", page), page[:3000]
    finally:
        demo.terminate()
        output = demo.communicate(timeout=60)[0]
    assert "Task defender.tasks.run_test" in output and "Task defender.tasks.get_alerts" in output


def _get_or_empty(session, url):
    try:
        return session.get(url, timeout=5).text
    except requests.ConnectionError:  # the site is still starting
        return ""
