"""run_simulator and run_demo: what a new user reads when they start, and a friendly word when a port is taken."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
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
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
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
