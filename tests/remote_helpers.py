"""Starting real agent processes against the site, for the remote-node tests."""

import os
import subprocess
import sys
import time
from pathlib import Path

from defender.models import Integration, Job, RemoteNode
from defender.remote import tokens
from tests.factories import simulator_integration

ROOT = Path(__file__).resolve().parent.parent


def make_node_with_token_file(tmp_path, name="dmz-node"):
    node = RemoteNode.objects.create(name=name, poll_interval_seconds=5)
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(tokens.issue(node))
    token_file.chmod(0o600)
    return node, token_file


def remote_integration_for(simulator, node, name="Defender behind the DMZ", **fields):
    return simulator_integration(
        simulator, name=name, location=Integration.Location.REMOTE, remote_node=node, read_timeout=30.0, **fields
    )


def start_agent(site, token_file, *extra):
    """A real agent process, as a node would run it: ``manage.py run_remote_node`` with the agent's own settings."""
    environment = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    environment["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "manage.py", "run_remote_node", "--site", site.url, "--token-file", str(token_file)]
    if getattr(site, "ca_path", None):
        command += ["--ca-file", str(site.ca_path)]
    command += ["--wait", "2", *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_job(job, timeout=60, states=(Job.State.DONE, Job.State.FAILED, Job.State.EXPIRED)):
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        job.refresh_from_db()
        if job.state in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job.pk} still {job.state} after {timeout} s")


def wait_until(condition, timeout=60):
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError(f"still not so after {timeout} s")
        time.sleep(0.05)


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.stdout.read()


def answered_by_agent(site, token_file, job, timeout=60):
    """The job once a real agent process has run it, and what that agent printed."""
    agent = start_agent(site, token_file)
    try:
        job = wait_for_job(job, timeout)
    finally:
        output = stop(agent)
    return job, output
