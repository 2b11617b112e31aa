"""Real agent processes against the live site (behind TLS) and the simulator."""

import signal
import subprocess
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import trustme
from django.db import connection

from defender.models import Actor, Job
from defender.remote import jobs, tokens
from tests.fixtures.tls_front import TlsFront
from tests.remote_helpers import (
    make_node_with_token_file,
    remote_integration_for,
    start_agent,
    stop,
    wait_for_job,
)


@pytest.fixture
def node(transactional_db, tmp_path):
    return make_node_with_token_file(tmp_path)


def test_a_remote_integrations_test_passes_through_the_agent_not_the_site(simulator, site_over_https, node):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    simulator.reset_counters()
    job = jobs.enqueue(integration, Job.Kind.TEST)
    agent = start_agent(site_over_https, token_file)
    try:
        job = wait_for_job(job)
    finally:
        output = stop(agent)
    assert job.state == Job.State.DONE, output
    integration.refresh_from_db()
    assert integration.last_test_ok is True, integration.last_test_summary
    seen = [record for record in simulator.requests if record.kind in ("token", "discovery", "api")]
    assert seen and all("(remote node)" in record.user_agent for record in seen)
    assert integration.client_secret not in output
    remote_node.refresh_from_db()
    assert remote_node.agent_version == "1.0" and remote_node.last_seen_at is not None


def test_alerts_fetched_by_the_agent_arrive_in_the_actors_stored_alerts(simulator, site_over_https, node):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = Actor.objects.create(name="Finance workstation", hostname=hostname, alternate_hostname=alternate)
    from datetime import UTC, datetime, timedelta

    until = datetime.now(UTC)
    since = until - timedelta(days=30)
    job = jobs.enqueue(
        integration,
        Job.Kind.ALERTS,
        {"actor_id": actor.pk, "hostnames": actor.hostnames(), "since": since.isoformat(), "until": until.isoformat()},
    )
    agent = start_agent(site_over_https, token_file)
    try:
        job = wait_for_job(job)
    finally:
        output = stop(agent)
    assert job.state == Job.State.DONE, output + job.error
    assert actor.alerts.filter(integration=integration).count() > 0
    fetch = actor.alert_fetches.get(integration=integration)
    assert fetch.ok and fetch.alert_count == actor.alerts.count()


def test_a_revoked_token_makes_the_agent_say_so_and_exit_non_zero(site_over_https, node):
    remote_node, token_file = node
    tokens.revoke(remote_node)
    agent = start_agent(site_over_https, token_file)
    try:
        exit_code = agent.wait(timeout=60)
    except subprocess.TimeoutExpired:
        exit_code = None
    output = stop(agent)
    assert exit_code == 2, output
    assert "refused this node's token" in output
    assert token_file.read_text() not in output


def test_sigterm_while_waiting_for_work_stops_the_agent_cleanly(site_over_https, node):
    _remote_node, token_file = node
    agent = start_agent(site_over_https, token_file)
    time.sleep(3)
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=15) == 0
    assert "Remote node agent stopped" in agent.stdout.read()


def test_sigterm_during_a_job_finishes_and_answers_it_before_stopping(
    simulator, clean_simulator, site_over_https, node
):
    remote_node, token_file = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    simulator.faults.set(delay=1)
    agent = start_agent(site_over_https, token_file)
    wait_for_job(job, states=(Job.State.RUNNING,))
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0
    job.refresh_from_db()
    assert job.state == Job.State.DONE and job.attempts == 1


def test_an_agent_killed_mid_job_has_its_job_finished_by_a_second_agent(
    simulator, clean_simulator, site_over_https, node, settings
):
    settings.REMOTE_JOB_LEASE_SECONDS = 3
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    simulator.faults.set(delay=4)  # every answer from Defender is slow: the first agent is mid-job when it dies
    job = jobs.enqueue(integration, Job.Kind.TEST)
    first = start_agent(site_over_https, token_file)
    wait_for_job(job, states=(Job.State.RUNNING,))
    first.kill()
    stop(first)
    simulator.faults.clear()
    second = start_agent(site_over_https, token_file)
    try:
        job = wait_for_job(job, timeout=90)
    finally:
        output = stop(second)
    assert job.state == Job.State.DONE, output
    assert job.attempts == 2


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="Exactly-once claiming under concurrent agents is proved on PostgreSQL (SKIP LOCKED): run with "
    "DATABASE_URL=postgres://postgres@127.0.0.1:5432/test, as CI does.",
)
def test_two_agents_and_many_jobs_run_each_job_exactly_once(simulator, site_over_https, node):
    remote_node, token_file = node
    integrations = [remote_integration_for(simulator, remote_node, name=f"Defender {index}") for index in range(4)]
    queued = [jobs.enqueue(integrations[index % 4], Job.Kind.TEST) for index in range(16)]
    agents = [start_agent(site_over_https, token_file) for _ in range(2)]
    try:
        done = [wait_for_job(job, timeout=120) for job in queued]
    finally:
        outputs = [stop(agent) for agent in agents]
    assert all(job.state == Job.State.DONE for job in done), outputs
    assert all(job.attempts == 1 for job in done)
    assert len({job.node_id for job in done}) == 1  # one node, two agent processes sharing its token


def test_while_the_site_is_down_the_agent_retries_with_backoff_and_resumes_when_it_is_back(
    simulator, live_server, node, closed_port, tmp_path
):
    remote_node, token_file = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    site_ca = trustme.CA()
    ca_path = tmp_path / "site-ca.pem"
    site_ca.cert_pem.write_to_path(str(ca_path))
    agent = start_agent(SimpleNamespace(url=f"https://127.0.0.1:{closed_port}", ca_path=ca_path), token_file)
    front = None
    try:
        time.sleep(3)
        assert Job.objects.get(pk=job.pk).state == Job.State.QUEUED
        # The site comes back at the same address with the certificate the agent trusts.
        backend = urlsplit(live_server.url)
        front = TlsFront(backend.hostname, backend.port, tmp_path / "front", port=closed_port, ca=site_ca)
        assert wait_for_job(job).state == Job.State.DONE
    finally:
        output = stop(agent)
        if front:
            front.close()
    assert "Cannot reach the site" in output and "trying again in" in output
    assert token_file.read_text() not in output


def test_a_job_that_arrives_as_the_agent_is_told_to_stop_is_given_back_at_once(
    simulator, site_over_https, node, monkeypatch
):
    from defender.remote.agent import Agent
    from defender.services import client

    remote_node, token_file = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # in this process, leave pytest's handlers alone
    monkeypatch.setattr(client, "USER_AGENT", client.USER_AGENT)

    class StoppedAsTheJobArrives(Agent):
        def check_in(self):
            found = super().check_in()
            self.stopping.set()  # what SIGTERM does once the check-in has returned
            return found

    agent = StoppedAsTheJobArrives(
        site_over_https.url, token_file.read_text(), ca_pem=site_over_https.ca_path.read_text(), wait=1
    )
    try:
        assert agent.run() == 0
    finally:
        agent.transport.session.close()  # its kept-alive connection would hold a site thread, and its database link
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.node is None and job.attempts == 1
