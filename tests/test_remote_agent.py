"""Real agent processes against the live site (behind TLS) and the simulator."""

import io
import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
import trustme
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from defender.models import Actor, Job, RemoteNode
from defender.operations import answers
from defender.remote import jobs, tokens, wire
from defender.remote.agent import AGENT_VERSION, Agent
from defender.services.connectivity import STEP_NAMES
from defender.services.process import PROCESS
from defender.services.steps import FAILED, SKIPPED
from tests.factories import simulator_integration
from tests.fixtures.tls_front import TlsFront
from tests.remote_helpers import (
    answered_by_agent,
    make_node_with_token_file,
    remote_integration_for,
    start_agent,
    stop,
    wait_for_job,
    wait_until,
)


@pytest.fixture
def node(transactional_db, tmp_path):
    return make_node_with_token_file(tmp_path)


def test_a_remote_integrations_test_passes_through_the_agent_not_the_site(simulator, site_over_https, node):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    simulator.reset_counters()
    job = jobs.enqueue(integration, Job.Kind.TEST)
    job, output = answered_by_agent(site_over_https, token_file, job)
    assert job.state == Job.State.DONE, output
    integration.refresh_from_db()
    assert integration.last_test_ok is True, integration.last_test_summary
    seen = [record for record in simulator.requests if record.kind in ("token", "discovery", "api")]
    assert seen and all("(remote node)" in record.user_agent for record in seen)
    assert integration.client_secret not in output
    remote_node.refresh_from_db()
    assert remote_node.agent_version == AGENT_VERSION and remote_node.last_seen_at is not None


def test_alerts_fetched_by_the_agent_arrive_in_the_actors_stored_alerts(simulator, site_over_https, node):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = Actor.objects.create(name="Finance workstation", hostname=hostname, alternate_hostname=alternate)
    until = datetime.now(UTC)
    since = until - timedelta(days=30)
    job = jobs.enqueue(
        integration,
        Job.Kind.ALERTS,
        {"actor_id": actor.pk, "hostnames": actor.hostnames(), "since": since.isoformat(), "until": until.isoformat()},
    )
    job, output = answered_by_agent(site_over_https, token_file, job)
    assert job.state == Job.State.DONE, output + job.error
    assert actor.alerts.filter(integrations=integration).count() > 0
    fetch = actor.alert_fetches.get(integration=integration)
    assert fetch.ok and fetch.alert_count == actor.alerts.count()


def test_defender_alerts_on_a_remote_integration_waits_for_the_agent_and_stores_its_answer_for_the_actor(
    simulator, site_over_https, node
):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    hostname, alternate = simulator.actor_hostnames()[0]
    actor = Actor.objects.create(name="Finance workstation", hostname=hostname, alternate_hostname=alternate)
    simulator.reset_counters()
    agent = start_agent(site_over_https, token_file)
    try:
        # The command asks only a node that has checked in at least once: the agent has started by then.
        wait_until(lambda: RemoteNode.objects.get(pk=remote_node.pk).last_seen_at is not None)
        out, err = io.StringIO(), io.StringIO()
        since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        call_command(
            "defender_alerts",
            integration.name,
            "--actor",
            actor.name,
            "--since",
            since,
            "--json",
            "--timeout",
            "60",
            stdout=out,
            stderr=err,
        )
    finally:
        output = stop(agent)
    rows = json.loads(out.getvalue())
    assert rows, output
    job = Job.objects.get(integration=integration)
    assert job.state == Job.State.DONE and job.parameters["actor_id"] == actor.pk
    seen = [record for record in simulator.requests if record.kind in ("token", "discovery", "api")]
    assert seen and all("(remote node)" in record.user_agent for record in seen)
    fetch = actor.alert_fetches.get(integration=integration)
    assert fetch.ok and fetch.alert_count == len(rows) == actor.alerts.filter(integrations=integration).count()
    assert "Window asked: between " in err.getvalue()


def test_defender_alerts_says_what_the_remote_node_answered_when_defender_refused_it(simulator, site_over_https, node):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node, client_secret="wrong")
    actor = Actor.objects.create(name="Finance workstation", hostname=simulator.actor_hostnames()[0][0])
    agent = start_agent(site_over_https, token_file)
    try:
        wait_until(lambda: RemoteNode.objects.get(pk=remote_node.pk).last_seen_at is not None)
        with pytest.raises(CommandError, match="AADSTS7000215"):
            call_command("defender_alerts", integration.name, "--actor", actor.name, "--timeout", "60")
    finally:
        stop(agent)
    fetch = actor.alert_fetches.get(integration=integration)
    assert not fetch.ok and "AADSTS7000215" in fetch.message


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
    simulator.faults.set(delay=1)  # the API answers after a second: the job lasts long enough to be stopped in
    agent = start_agent(site_over_https, token_file)
    # Running, for the agent: it is talking to Defender. (The job's state turns running when the site stores the
    # claim, a moment before the agent has read it; a signal then gives the job back, proved further down.)
    wait_until(lambda: any("(remote node)" in record.user_agent for record in simulator.requests))
    agent.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=60) == 0, stop(agent)
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


@pytest.fixture
def in_process_agent(site_over_https, node, monkeypatch):
    """An agent in this process, so a test can send it a real SIGTERM at the very moment it needs, from inside the
    site (which runs in this process too). run() installs its signal handlers and puts pytest's back."""
    monkeypatch.setattr(PROCESS, "user_agent", PROCESS.user_agent)
    _remote_node, token_file = node
    made = []

    def make(**options):
        options.setdefault("wait", 2)
        ca_pem = site_over_https.ca_path.read_text()
        agent = Agent(site_over_https.url, token_file.read_text(), ca_pem=ca_pem, **options)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.transport.session.close()  # its kept-alive connection would hold a site thread, and its database link


def sigterm_to(agent):
    """SIGTERM to the main thread, where the agent runs (and where Python runs signal handlers); returns once its
    handler has run."""
    signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
    agent.stopping.wait(10)


def test_sigterm_between_the_sites_claim_and_the_agent_reading_it_gives_the_job_back_before_stopping(
    simulator, node, in_process_agent, monkeypatch
):
    remote_node, _ = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    agent = in_process_agent()
    claim_next = jobs.claim_next

    def claim_then_stop_the_agent(*args, **kwargs):
        claimed = claim_next(*args, **kwargs)
        if claimed is not None:
            sigterm_to(agent)  # the claim is stored; its answer has not left the site yet
        return claimed

    monkeypatch.setattr(jobs, "claim_next", claim_then_stop_the_agent)
    assert agent.run() == 0
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.node is None and job.attempts == 1


def test_sigterm_while_waiting_for_work_leaves_a_job_queued_after_it_to_the_next_agent(
    simulator, node, in_process_agent, monkeypatch
):
    remote_node, _ = node
    integration = remote_integration_for(simulator, remote_node)
    agent = in_process_agent(wait=10)
    its_check_in, saw_work = [], threading.Event()
    release_unheld, work_waiting = jobs.release_unheld, jobs.work_waiting

    def check_in_arrives(for_node, agent_id, holding=()):
        if agent_id == agent.agent_id and not its_check_in:
            its_check_in.append(threading.current_thread())
            sigterm_to(agent)  # the site has the agent's check-in; the agent waits for the answer
        return release_unheld(for_node, agent_id, holding)

    def look_for_work(for_node):
        found = work_waiting(for_node)
        if found and threading.current_thread() in its_check_in:
            saw_work.set()
        return found

    monkeypatch.setattr(jobs, "release_unheld", check_in_arrives)
    monkeypatch.setattr(jobs, "work_waiting", look_for_work)
    assert agent.run() == 0  # at once, not at the end of the check-in's wait
    job = jobs.enqueue(integration, Job.Kind.TEST)  # while the site still holds the agent's check-in open
    assert saw_work.wait(30)  # that check-in saw the job...
    its_check_in[0].join(30)  # ...and has answered the agent that left
    assert not its_check_in[0].is_alive()
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.attempts == 0  # nobody was handed it


def test_a_claim_whose_answer_did_not_reach_a_stopping_agent_is_back_in_the_queue_when_it_has_stopped(
    simulator, node, in_process_agent, monkeypatch
):
    remote_node, _ = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    agent = in_process_agent()
    claim_next = jobs.claim_next

    def claim_then_break(*args, **kwargs):
        claimed = claim_next(*args, **kwargs)
        if claimed is not None:
            sigterm_to(agent)
            raise RuntimeError("the site fails after storing the claim, before answering")
        return claimed

    monkeypatch.setattr(jobs, "claim_next", claim_then_break)
    assert agent.run() == 0
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.node is None and job.attempts == 1


def test_a_claim_whose_answer_was_lost_is_run_at_the_agents_next_check_in_not_after_its_lease(
    simulator, site_over_https, node, monkeypatch
):
    remote_node, token_file = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    claim_next, broke = jobs.claim_next, []

    def claim_then_break_once(*args, **kwargs):
        claimed = claim_next(*args, **kwargs)
        if claimed is not None and not broke:
            broke.append(claimed.pk)
            raise RuntimeError("the site fails after storing the claim, before answering")
        return claimed

    monkeypatch.setattr(jobs, "claim_next", claim_then_break_once)
    agent = start_agent(site_over_https, token_file)
    try:
        job = wait_for_job(job)  # well within the 300 s lease
    finally:
        output = stop(agent)
    assert broke == [job.pk]
    assert job.state == Job.State.DONE and job.attempts == 2, output
    assert "the site answered 500 to a claim" in output


def test_the_answer_to_a_cancelled_job_is_refused_and_the_agent_moves_on_to_the_next(
    simulator, clean_simulator, site_over_https, node, django_user_model
):
    remote_node, token_file = node
    integration = remote_integration_for(simulator, remote_node)
    first = jobs.enqueue(integration, Job.Kind.TEST)
    simulator.faults.set(delay=1)
    agent = start_agent(site_over_https, token_file)
    try:
        wait_until(lambda: any("(remote node)" in record.user_agent for record in simulator.requests))
        assert answers.cancel(first, django_user_model.objects.create_user("alice-admin"))
        second = wait_for_job(jobs.enqueue(integration, Job.Kind.TEST))
    finally:
        output = stop(agent)
    first.refresh_from_db()
    assert first.state == Job.State.CANCELLED and first.result is None
    assert second.state == Job.State.DONE, output
    assert f"Job {first.pk} was cancelled on the site; answer dropped" in output


def test_the_agent_refuses_a_plain_http_site_unless_told_it_is_a_development_site(live_server, node):
    _remote_node, token_file = node
    agent = start_agent(live_server, token_file)
    assert agent.wait(timeout=60) == 1
    output = stop(agent)
    assert f"--site {live_server.url} is plain HTTP" in output and "--allow-insecure-http" in output
    assert token_file.read_text() not in output


def test_with_allow_insecure_http_the_agent_runs_jobs_of_a_plain_http_site_and_warns(simulator, live_server, node):
    remote_node, token_file = node
    job = jobs.enqueue(remote_integration_for(simulator, remote_node), Job.Kind.TEST)
    agent = start_agent(live_server, token_file, "--allow-insecure-http")
    try:
        job = wait_for_job(job)
    finally:
        output = stop(agent)
    assert job.state == Job.State.DONE, output
    assert "Talking to the site over plain HTTP" in output


def test_a_test_that_runs_past_its_time_bound_is_answered_at_the_bound_with_the_step_it_was_on(
    clean_simulator, transactional_db
):
    settings = simulator_integration(clean_simulator).to_settings()
    clean_simulator.faults.set(delay=4)  # one slow answer takes longer than the whole Test may
    result = wire.run_test_within(settings, 1.0)
    outcomes = [step.outcome for step in result.steps]
    assert [step.name for step in result.steps] == list(STEP_NAMES)
    assert outcomes.count(FAILED) == 1 and set(outcomes[outcomes.index(FAILED) + 1 :]) <= {SKIPPED}
    failed = result.steps[outcomes.index(FAILED)]
    assert failed.message.startswith("The Test did not finish within 1 s, the most its connect and read timeouts")
