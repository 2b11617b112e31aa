"""The node API: only a node's own valid token gets in, and a node sees and answers only its own integrations' jobs."""

import gzip
import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from defender.models import Integration, Job, RemoteNode
from defender.operations import answers
from defender.remote import jobs, tokens
from tests.factories import CLIENT_SECRET, make_integration

pytestmark = pytest.mark.django_db

CHECK_IN = "/api/nodes/check-in/"
CLAIM = "/api/nodes/claim/"
AGENT = "agent-a"


def make_node(name="dmz-node"):
    node = RemoteNode.objects.create(name=name)
    return node, tokens.issue(node)


def remote_integration(node, name="Defender behind the DMZ"):
    return make_integration(name=name, location=Integration.Location.REMOTE, remote_node=node)


def post(client, url, token, body=None, **extra):
    return client.post(
        url, json.dumps(body or {}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **extra
    )


def claim(client, token, agent_id=AGENT):
    """What an agent does when its check-in says work is waiting; the job's payload, or None."""
    response = post(client, CLAIM, token, {"agent_id": agent_id})
    assert response.status_code == 200
    return response.json()["job"]


def check_in(client, token, agent_id=AGENT, holding=()):
    body = {"agent_version": "1.1", "agent_id": agent_id, "wait": 0, "holding": list(holding)}
    return post(client, CHECK_IN, token, body)


def test_the_site_stores_only_a_hash_of_the_token():
    node, token = make_node()
    node.refresh_from_db()
    assert token not in {node.token_hash, node.token_hint} and node.token_hash == tokens.token_hash(token)


@pytest.mark.parametrize("header", ["", "Bearer ", "Bearer rn1_unknown-token", "Basic abc"])
def test_unknown_or_missing_token_gets_401_and_is_logged_without_the_token(client, caplog, header):
    with caplog.at_level(logging.WARNING, logger="defender.remote.node_api"):
        response = client.post(CHECK_IN, "{}", content_type="application/json", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert "Refused remote-node call" in caplog.text
    assert "rn1_unknown-token" not in caplog.text


def test_revoked_token_gets_401(client):
    node, token = make_node()
    tokens.revoke(node)
    assert post(client, CHECK_IN, token).status_code == 401


def test_a_reissued_token_replaces_the_old_one(client):
    node, old = make_node()
    new = tokens.issue(node)
    assert post(client, CHECK_IN, old).status_code == 401
    assert post(client, CHECK_IN, new).status_code == 200


def test_check_in_records_when_and_which_agent_version(client):
    node, token = make_node()
    response = post(client, CHECK_IN, token, {"agent_version": "1.0", "wait": 0})
    assert response.status_code == 200 and response.json()["job"] is None
    node.refresh_from_db()
    assert node.agent_version == "1.0" and node.last_seen_at is not None


def test_a_node_gets_its_own_integrations_job_with_the_settings_it_needs(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    assert check_in(client, token).json()["work"] is True
    payload = claim(client, token)
    assert payload["id"] == job.pk and payload["kind"] == "test"
    assert payload["settings"]["client_secret"] == CLIENT_SECRET
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.node == node and job.attempts == 1


def test_a_node_never_gets_another_nodes_job(client):
    node, token = make_node()
    other, _ = make_node("other-node")
    jobs.enqueue(remote_integration(other), Job.Kind.TEST)
    jobs.enqueue(make_integration(name="Local one"), Job.Kind.TEST)
    assert check_in(client, token).json()["work"] is False
    assert claim(client, token) is None


def test_answering_another_nodes_job_is_refused_with_401(client):
    node, token = make_node()
    other, other_token = make_node("other-node")
    job = jobs.enqueue(remote_integration(other), Job.Kind.TEST)
    claim(client, other_token)
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": []}})
    assert response.status_code == 401
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING


def test_an_answer_records_the_test_on_the_integration(client):
    node, token = make_node()
    integration = remote_integration(node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    claim(client, token)
    steps = [{"name": "DNS lookup", "outcome": "passed", "duration_ms": 1, "message": "fine"}]
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": steps}})
    assert response.status_code == 200
    integration.refresh_from_db()
    assert integration.last_test_ok is True and integration.last_test_summary.startswith("All steps passed")


def test_a_gzipped_answer_is_accepted(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    steps = [{"name": "Token", "outcome": "failed", "duration_ms": 3, "message": "wrong secret"}]
    body = gzip.compress(json.dumps({"ok": False, "result": {"steps": steps}}).encode())
    response = client.post(
        f"/api/nodes/jobs/{job.pk}/answer/",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.state == Job.State.FAILED


def test_an_oversized_body_is_refused_with_413(client, settings):
    settings.REMOTE_NODE_MAX_RESULT_BYTES = 1000
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"x": "y" * 5000}})
    assert response.status_code == 413


def test_malformed_json_is_refused_with_400(client):
    _node, token = make_node()
    response = client.post(CHECK_IN, "{not json", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400


def test_a_job_no_node_claims_expires_with_the_nodes_last_check_in(client):
    node, _ = make_node()
    node.last_seen_at = timezone.now() - timedelta(hours=3)
    node.save()
    integration = remote_integration(node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    Job.objects.filter(pk=job.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    answers.housekeeping()
    job = answers.refreshed(job.pk)
    assert job.state == Job.State.EXPIRED
    assert job.error.startswith("remote node dmz-node has not checked in since ")
    integration.refresh_from_db()
    assert integration.last_test_ok is False and "has not checked in since" in integration.last_test_summary


def test_a_job_whose_node_went_silent_returns_to_the_queue_after_its_lease(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    payload = claim(client, token)
    assert payload["id"] == job.pk
    job.refresh_from_db()
    assert job.attempts == 2 and job.state == Job.State.RUNNING


def test_a_node_can_give_a_job_back(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    assert post(client, f"/api/nodes/jobs/{job.pk}/give-back/", token).status_code == 200
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.node is None


def test_claiming_is_exclusive_even_when_two_nodes_race_for_one_queue(client):
    node, token = make_node()
    for index in range(5):
        jobs.enqueue(remote_integration(node, name=f"Defender {index}"), Job.Kind.TEST)
    claimed = [jobs.claim_next(node) for _ in range(7)]
    ids = [job.pk for job in claimed if job]
    assert len(ids) == 5 and len(set(ids)) == 5


def test_a_wait_that_is_not_a_number_answers_at_once(client):
    _node, token = make_node()
    for wait in ["NaN", "Infinity", "soon", None]:
        response = client.post(
            CHECK_IN,
            f'{{"wait": {json.dumps(wait) if wait in ("soon", None) else wait}}}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 200 and response.json()["job"] is None


def test_a_body_that_is_not_a_json_object_is_refused_with_400(client):
    _node, token = make_node()
    response = client.post(CHECK_IN, "[]", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400


def test_an_answer_after_the_job_was_requeued_and_taken_again_changes_nothing(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    claim(client, token)  # the same node takes it again: attempt 2
    first_claim = Job.objects.get(pk=job.pk)
    first_claim.attempts = 1  # the stale holder still thinks it runs attempt 1
    assert answers.complete(first_claim, True, {"steps": []}, "") is False
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.attempts == 2


def test_a_repeated_answer_is_a_conflict_and_records_once(client):
    node, token = make_node()
    integration = remote_integration(node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    claim(client, token)
    steps = [{"name": "DNS lookup", "outcome": "passed", "duration_ms": 1, "message": "fine"}]
    url = f"/api/nodes/jobs/{job.pk}/answer/"
    assert post(client, url, token, {"ok": True, "result": {"steps": steps}}).status_code == 200
    assert post(client, url, token, {"ok": True, "result": {"steps": steps}}).status_code == 409


def test_an_answer_the_site_cannot_read_fails_the_job_with_advice(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": "nope"}})
    assert response.status_code == 400
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "update its agent" in job.error


def test_a_job_whose_node_keeps_going_silent_fails_after_three_attempts(client):
    node, token = make_node()
    integration = remote_integration(node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    for _ in range(3):
        claim(client, token)
        Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    answers.housekeeping()
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "took this job 3 times and never answered" in job.error
    integration.refresh_from_db()
    assert integration.last_test_ok is False


def test_a_check_in_says_work_is_waiting_but_hands_out_nothing(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    answer = check_in(client, token).json()
    assert answer["work"] is True and answer["job"] is None
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.attempts == 0  # a check-in cut short by the agent loses nothing


def test_a_claim_whose_answer_never_reached_its_agent_returns_to_the_queue_when_the_agent_checks_in_holding_none(
    client,
):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)  # the answer is lost on the way: the agent never learns it holds the job
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.agent_id == AGENT
    assert check_in(client, token, holding=[]).json()["work"] is True  # ...and it is there to claim again
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.node is None and job.agent_id == ""


def test_an_agent_holding_nothing_leaves_the_jobs_of_other_agents_sharing_the_nodes_token(client):
    node, token = make_node()
    first = jobs.enqueue(remote_integration(node, "Defender 1"), Job.Kind.TEST)
    second = jobs.enqueue(remote_integration(node, "Defender 2"), Job.Kind.TEST)
    claim(client, token, agent_id="agent-a")
    claim(client, token, agent_id="agent-b")
    check_in(client, token, agent_id="agent-b", holding=[second.pk])
    check_in(client, token, agent_id="agent-c", holding=[])
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.state == second.state == Job.State.RUNNING
    assert (first.agent_id, second.agent_id) == ("agent-a", "agent-b")


def test_an_agent_of_version_1_0_still_gets_its_job_in_the_check_ins_answer(client):
    node, token = make_node()
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    payload = post(client, CHECK_IN, token, {"agent_version": "1.0", "wait": 0}).json()["job"]
    assert payload["id"] == job.pk
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (CLAIM, {}),
        (CLAIM, {"agent_id": ["not", "text"]}),
        (CLAIM, {"agent_id": "x" * 65}),
        (CHECK_IN, {"agent_id": AGENT, "holding": "all of them"}),
        (CHECK_IN, {"agent_id": AGENT, "holding": [1, "2"]}),
    ],
)
def test_a_claim_or_check_in_that_does_not_say_which_agent_or_which_jobs_is_refused_with_400(client, url, body):
    _node, token = make_node()
    response = post(client, url, token, body)
    assert response.status_code == 400 and response.json()["error"]


def test_a_test_whose_node_does_not_answer_within_the_tests_time_bound_fails_saying_who_took_it_and_when(client):
    node, token = make_node()
    integration = make_integration(
        name="Defender DMZ",
        location=Integration.Location.REMOTE,
        remote_node=node,
        connect_timeout=2.0,
        read_timeout=4.0,
    )
    job = jobs.enqueue(integration, Job.Kind.TEST)
    claim(client, token)
    job.refresh_from_db()
    # 3 × 2 s for DNS, TCP and TLS, and 2 × (2 + 2 × 4) s for the token and the API call, plus the margin.
    assert job.answer_deadline == job.claimed_at + timedelta(seconds=26 + jobs.ANSWER_MARGIN_SECONDS)
    assert answers.refreshed(job.pk).state == Job.State.RUNNING
    answers.housekeeping(now=job.answer_deadline + timedelta(seconds=1))
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert job.error.startswith("remote node dmz-node took the job at ") and "and has not answered" in job.error
    integration.refresh_from_db()
    assert integration.last_test_ok is False and "has not answered" in integration.last_test_summary
    late = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": []}})
    assert late.status_code == 409


def test_get_alerts_has_no_answer_deadline_only_its_lease(client):
    from defender.models import Actor

    node, token = make_node()
    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    now = timezone.now()
    job = jobs.enqueue_alerts(actor, remote_integration(node), now - timedelta(days=1), now)
    claim(client, token)
    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.answer_deadline is None and job.lease_expires_at is not None


def test_an_answer_for_a_cancelled_job_is_refused_with_410_and_records_nothing(client, admin_user):
    node, token = make_node()
    integration = remote_integration(node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    claim(client, token)
    assert answers.cancel(job, admin_user)
    steps = [{"name": "DNS lookup", "outcome": "passed", "duration_ms": 1, "message": "fine"}]
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": steps}})
    assert response.status_code == 410
    assert response.json()["error"].startswith(f"Job {job.pk} is no longer wanted: Cancelled by alice-admin at ")
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.result is None
    integration.refresh_from_db()
    assert integration.last_test_ok is None


def claimed_job(client, token, node):
    job = jobs.enqueue(remote_integration(node), Job.Kind.TEST)
    claim(client, token)
    return job


def raw_post(client, url, token, body):
    return client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.parametrize("endpoint", ["check-in", "answer"])
def test_five_thousand_nested_arrays_are_refused_with_400_not_a_crash(client, endpoint):
    node, token = make_node()
    job = claimed_job(client, token, node)
    url = CHECK_IN if endpoint == "check-in" else f"/api/nodes/jobs/{job.pk}/answer/"
    nested = "[" * 5000 + "]" * 5000
    response = raw_post(client, url, token, f'{{"ok": true, "wait": 0, "result": {nested}}}')
    assert response.status_code == 400
    assert response.json() == {"error": "The body nests arrays or objects more than 32 levels deep."}


def test_brackets_inside_strings_do_not_count_as_nesting(client):
    node, token = make_node()
    job = claimed_job(client, token, node)
    message = '[{"quoted": "]]"}' + "[" * 100 + '\\"'
    steps = [{"name": "DNS lookup", "outcome": "passed", "duration_ms": 1, "message": message}]
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": steps}})
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.result["steps"][0]["message"] == message


@pytest.mark.parametrize("version", ["1.0\\u0000", "1.0\\ud800", "\\udc00"], ids=["nul", "high-surrogate", "low"])
def test_text_no_database_can_store_is_refused_with_400(client, version):
    node, token = make_node()
    response = raw_post(client, CHECK_IN, token, f'{{"agent_version": "{version}", "wait": 0}}')
    assert response.status_code == 400
    assert "NUL character or an unpaired surrogate" in response.json()["error"]
    node.refresh_from_db()
    assert node.agent_version == ""


def test_a_character_beyond_the_basic_plane_is_stored_as_sent(client):
    node, token = make_node()
    response = raw_post(client, CHECK_IN, token, '{"agent_version": "1.0 \\ud83d\\ude80", "wait": 0}')
    assert response.status_code == 200
    node.refresh_from_db()
    assert node.agent_version == "1.0 \N{ROCKET}"


@pytest.mark.parametrize("number", ["1" + "0" * 400, "-1" + "0" * 400], ids=["huge", "hugely-negative"])
def test_a_number_no_column_can_hold_reads_as_missing(client, number):
    _node, token = make_node()
    response = raw_post(client, CHECK_IN, token, f'{{"wait": {number}}}')
    assert response.status_code == 200 and response.json()["job"] is None


@pytest.mark.parametrize(
    "body, why",
    [("{not json", "not valid JSON"), ('{"ok": true, "result": ' + "[" * 100 + "]" * 100 + "}", "levels deep")],
)
def test_an_answer_refused_before_it_is_read_fails_its_job_at_once(client, body, why):
    node, token = make_node()
    job = claimed_job(client, token, node)
    assert raw_post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, body).status_code == 400
    job.refresh_from_db()
    assert job.state == Job.State.FAILED
    assert "answer was refused" in job.error and why in job.error


# The answer is read against the wire format: a wrong field is named, and nothing of the answer is kept.

GOOD_STEPS = [
    {"name": "DNS lookup", "outcome": "passed", "duration_ms": 1, "message": "fine"},
    {"name": "TCP connection", "outcome": "passed", "duration_ms": 2, "message": "fine"},
    {"name": "TLS handshake", "outcome": "passed", "duration_ms": 3, "message": "fine"},
]


def with_step(index, **changes):
    steps = [dict(step) for step in GOOD_STEPS]
    steps[index].update(changes)
    return steps


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"ok": True, "result": {"steps": with_step(2, outcome="maybe")}},
            "steps[2].outcome must be one of passed, failed, skipped",
        ),
        (
            {"ok": True, "result": {"steps": with_step(0, duration_ms="fast")}},
            "steps[0].duration_ms must be a whole number",
        ),
        (
            {"ok": True, "result": {"steps": with_step(1, duration_ms=-5)}},
            "steps[1].duration_ms must be a whole number",
        ),
        ({"ok": True, "result": {"steps": with_step(1, message=None)}}, "steps[1].message must be text"),
        ({"ok": True, "result": {"steps": [*GOOD_STEPS, "Token"]}}, "steps[3] must be an object"),
        ({"ok": True, "result": {"stages": GOOD_STEPS}}, "result.steps must be a list"),
        ({"ok": True, "result": ["DNS lookup"]}, "result must be an object"),
        ({"ok": "yes", "result": {"steps": GOOD_STEPS}}, "ok must be true or false"),
        ({"ok": False, "result": None, "error": {"why": "broke"}}, "error must be text"),
    ],
    ids=["outcome", "duration", "negative-duration", "message", "step", "steps", "result", "ok", "error"],
)
def test_a_test_answer_with_a_wrong_field_is_refused_naming_it_and_nothing_of_it_is_stored(client, body, named):
    node, token = make_node()
    job = claimed_job(client, token, node)
    integration = job.integration
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, body)
    assert response.status_code == 400
    assert named in response.json()["error"]
    job.refresh_from_db()
    integration.refresh_from_db()
    assert job.state == Job.State.FAILED and job.result is None
    assert named in job.error and "update its agent" in job.error
    # The integration's last Test is the refusal, as one failed "Remote node" step: none of the answer's steps.
    assert integration.last_test_ok is False
    assert [step["name"] for step in integration.last_test_steps] == ["Remote node"]
    assert named in integration.last_test_steps[0]["message"]


def test_an_alerts_answer_whose_window_is_not_two_times_is_refused_naming_it_and_stores_no_alert(client):
    from defender.models import Alert, AlertFetch
    from tests.factories import make_actor

    node, token = make_node()
    integration = remote_integration(node)
    actor = make_actor()
    until = timezone.now()
    job = jobs.enqueue_alerts(actor, integration, until - timedelta(hours=1), until)
    claim(client, token)
    alert = {"id": "da1", "title": "Suspicious PowerShell", "machine_name": "ws-fin-07"}
    body = {"ok": True, "result": {"alerts": [alert], "tried_names": ["ws-fin-07"], "window": ["yesterday"]}}
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, body)
    assert response.status_code == 400
    assert "result.window must be two times" in response.json()["error"]
    assert not Alert.objects.exists()
    fetch = AlertFetch.objects.get(actor=actor, integration=integration)
    assert not fetch.ok and "result.window must be two times" in fetch.message


def test_a_test_answer_with_fields_this_site_does_not_know_is_read_as_the_fields_it_knows(client):
    node, token = make_node()
    job = claimed_job(client, token, node)
    integration = job.integration
    steps = [{**step, "hint": "from a newer agent"} for step in GOOD_STEPS]
    steps[-1]["name"] = "API call"
    response = post(client, f"/api/nodes/jobs/{job.pk}/answer/", token, {"ok": True, "result": {"steps": steps}})
    assert response.status_code == 200
    integration.refresh_from_db()
    assert integration.last_test_ok is True


def test_a_check_in_holding_something_other_than_job_ids_is_refused_naming_the_field(client):
    _node, token = make_node()
    response = post(client, CHECK_IN, token, {"agent_id": AGENT, "holding": [1, "2"], "wait": 0})
    assert response.status_code == 400
    assert response.json()["error"] == "holding must be a list of job ids."
