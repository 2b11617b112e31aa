"""For the person at the browser, a Remote integration changes nothing but the wait."""

import re
from datetime import datetime, timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone

from defender import tasks
from defender.models import Actor, AlertFetch, Integration, Job, RemoteNode, TestRun
from defender.operations import answers, records
from defender.remote import jobs
from tests.factories import integration_form_data, make_integration, simulator_integration

pytestmark = pytest.mark.django_db


@pytest.fixture
def remote(db):
    node = RemoteNode.objects.create(name="dmz-node")
    return make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node)


def answer_with_steps(job, outcome="passed"):
    job = jobs.claim_next(job.integration.remote_node)
    steps = [{"name": "DNS lookup", "outcome": outcome, "duration_ms": 2, "message": "127.0.0.1 is an IP address."}]
    answers.complete(job, outcome == "passed", {"steps": steps}, "")


def test_test_on_a_remote_integration_queues_a_job_and_says_it_waits_for_the_node(admin_client, remote):
    response = admin_client.post(f"/settings/integrations/{remote.pk}/test/", follow=True)
    run = TestRun.objects.get()
    assert response.redirect_chain == [(f"/settings/test-runs/{run.pk}/", 303)]
    assert "Waiting for remote node dmz-node…" in response.content.decode()
    assert '<meta http-equiv="refresh"' in response.content.decode()
    job = Job.objects.get()
    assert job.kind == "test" and job.state == "queued" and run.job == job


def test_the_htmx_answer_polls_the_run(admin_client, remote):
    response = admin_client.post(f"/settings/integrations/{remote.pk}/test/", HTTP_HX_REQUEST="true")
    run = TestRun.objects.get()
    assert f'hx-get="/settings/test-runs/{run.pk}/"' in response.content.decode()


def test_once_the_node_answers_the_run_shows_the_same_steps_and_the_badge(admin_client, remote):
    admin_client.post(f"/settings/integrations/{remote.pk}/test/")
    run = TestRun.objects.get()
    answer_with_steps(run.job)
    body = admin_client.get(run.get_absolute_url(), HTTP_HX_REQUEST="true").content.decode()
    assert "DNS lookup" in body and "127.0.0.1 is an IP address." in body and "The Test passed." in body
    assert f'id="integration-{remote.pk}-badge" hx-swap-oob="true"' in body
    assert "hx-get" not in body and "Waiting for remote node" not in body
    remote.refresh_from_db()
    assert remote.last_test_ok is True


def test_a_local_and_a_remote_run_show_in_the_same_panel(admin_client, remote, simulator):
    local = simulator_integration(simulator)
    for integration in (local, remote):
        admin_client.post(f"/settings/integrations/{integration.pk}/test/")
    answer_with_steps(TestRun.objects.get(integration=remote).job)
    for run in TestRun.objects.all():
        body = admin_client.get(run.get_absolute_url(), HTTP_HX_REQUEST="true").content.decode()
        assert body.lstrip().startswith(f'<section id="test-run-{run.pk}" class="card mb-3 test-result">')
        assert f"Test of {run.title}</h2>" in body and '<ol class="list-unstyled step-list mb-0">' in body
        assert "The Test passed." in body


def test_without_a_node_checking_in_the_test_expires_with_the_message(admin_client, remote):
    admin_client.post(f"/settings/integrations/{remote.pk}/test/")
    run = TestRun.objects.get()
    Job.objects.filter(pk=run.job_id).update(deadline=timezone.now() - timedelta(seconds=1))
    tasks.remote_job_housekeeping()  # periodic, on the site
    body = admin_client.get(run.get_absolute_url()).content.decode()
    assert "remote node dmz-node has never checked in" in body and "The Test failed." in body


def test_test_on_the_form_of_a_remote_integration_says_to_submit_and_is_never_green(admin_client, remote):
    data = integration_form_data(location="remote", remote_node=remote.remote_node.pk)
    body = admin_client.post(f"/settings/integrations/{remote.pk}/edit/test/", data).content.decode()
    assert "Submit, then press Test" in body and "runs on node dmz-node" in body
    assert "Nothing was tested." in body
    assert "The Test passed." not in body
    assert not Job.objects.exists()


def test_the_list_shows_the_node_beside_a_remote_integration(admin_client, remote):
    body = admin_client.get("/settings/integrations/").content.decode()
    assert "via dmz-node" in body


def test_a_viewer_can_watch_a_job_but_not_start_one(viewer_client, remote):
    assert viewer_client.post(f"/settings/integrations/{remote.pk}/test/").status_code == 403
    job = jobs.enqueue(remote, Job.Kind.TEST)
    assert viewer_client.get(f"/settings/integrations/jobs/{job.pk}/").status_code == 200


def test_the_detail_page_shows_the_steps_of_the_last_test(admin_client, remote):
    job = jobs.enqueue(remote, Job.Kind.TEST)
    answer_with_steps(job, outcome="failed")
    body = admin_client.get(f"/settings/integrations/{remote.pk}/").content.decode()
    assert 'aria-label="Steps of the last Test"' in body and "127.0.0.1 is an IP address." in body


def test_get_alerts_queues_remote_integrations_and_asks_local_ones_at_once(admin_client, remote, simulator):
    from defender.models import Actor

    local = simulator_integration(simulator)
    hostname, _ = simulator.actor_hostnames()[0]
    actor = Actor.objects.create(name="Finance workstation", hostname=hostname)
    data = {"integrations": [remote.pk, local.pk], "window": "30d"}
    page = admin_client.post(f"/actors/{actor.pk}/alerts/", data, follow=True).content.decode()
    job = Job.objects.get(kind="alerts", runs_here=False)
    assert job.integration == remote and job.parameters["hostnames"] == [hostname]
    assert "Waiting for remote node dmz-node…" in page
    assert actor.alerts.filter(integrations=local).exists()
    assert '<noscript><meta http-equiv="refresh"' in page


def test_when_the_nodes_alerts_arrive_the_page_reloads_to_show_them(admin_client, remote):
    from defender.models import Actor

    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    admin_client.post(f"/actors/{actor.pk}/alerts/", {"integrations": [remote.pk], "window": "24h"})
    job = jobs.claim_next(remote.remote_node)
    answers.complete(job, False, None, "Defender answered 403: the app lacks Alert.Read.All.")
    response = admin_client.get(f"/settings/integrations/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == f"/actors/{actor.pk}/"
    page = admin_client.get(f"/actors/{actor.pk}/").content.decode()
    assert "Defender answered 403: the app lacks Alert.Read.All." in page and "Waiting for remote node" not in page


def refresh_url(response):
    """Where a page's <meta http-equiv="refresh"> sends the browser, as a browser without JavaScript reads it."""
    content = re.search(r'<meta http-equiv="refresh" content="([^"]+)"', response.content.decode()).group(1)
    _delay, _, target = content.partition(";")
    target = target.strip()
    return target.removeprefix("url=") if target else response.request["PATH_INFO"]


def test_without_javascript_the_waiting_page_refreshes_the_runs_own_page_until_the_test_is_done(admin_client, remote):
    response = admin_client.post(f"/settings/integrations/{remote.pk}/test/", follow=True)
    run = TestRun.objects.get()
    url = refresh_url(response)
    assert url == f"/settings/test-runs/{run.pk}/"
    again = admin_client.get(url)  # the refresh is a GET: the Test's own URL answers only POST
    assert again.status_code == 200 and "Waiting for remote node dmz-node…" in again.content.decode()
    assert refresh_url(again) == url
    answer_with_steps(run.job)
    done = admin_client.get(refresh_url(again))
    assert done.status_code == 200 and "The Test passed." in done.content.decode()
    assert '<meta http-equiv="refresh"' not in done.content.decode()


def test_an_administrator_cancels_a_waiting_test_and_the_page_says_who_and_when(admin_client, remote):
    admin_client.post(f"/settings/integrations/{remote.pk}/test/")
    run = TestRun.objects.get()
    job = run.job
    page = admin_client.get(run.get_absolute_url()).content.decode()
    assert f'action="/settings/integrations/jobs/{job.pk}/cancel/"' in page and ">Cancel</button>" in page
    response = admin_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/", follow=True)
    body = response.content.decode()
    assert response.redirect_chain == [(f"/settings/integrations/jobs/{job.pk}/", 302)]
    assert "Test of Defender DMZ cancelled." in body and "Cancelled by alice-admin at " in body
    assert '<meta http-equiv="refresh"' not in body
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED and job.error.startswith("Cancelled by alice-admin at ")
    remote.refresh_from_db()
    assert remote.last_test_ok is None  # a cancelled Test proved nothing: the last Test stays as it was
    run_page = admin_client.get(run.get_absolute_url()).content.decode()
    assert "Test of Defender DMZ cancelled." in run_page and "Cancelled by alice-admin at " in run_page
    assert '<meta http-equiv="refresh"' not in run_page and "hx-get" not in run_page
    run.refresh_from_db()
    assert run.finished and run.verdict == ""


def test_cancelling_through_htmx_replaces_the_waiting_box_in_place(admin_client, remote):
    response = admin_client.post(f"/settings/integrations/{remote.pk}/test/", HTTP_HX_REQUEST="true")
    job = Job.objects.get()
    assert f'<div id="job-{job.pk}"' in response.content.decode()
    assert f'hx-post="/settings/integrations/jobs/{job.pk}/cancel/" hx-target="#job-{job.pk}"' in (
        response.content.decode()
    )
    body = admin_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/", HTTP_HX_REQUEST="true").content.decode()
    assert f'<div id="job-{job.pk}"' in body and "Cancelled by alice-admin at " in body and "hx-get" not in body


def test_a_running_test_can_be_cancelled_too(admin_client, remote):
    job = jobs.enqueue(remote, Job.Kind.TEST)
    jobs.claim_next(remote.remote_node)
    admin_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED


def test_cancel_does_not_change_a_test_that_has_already_answered(admin_client, remote):
    job = jobs.enqueue(remote, Job.Kind.TEST)
    answer_with_steps(job)
    body = admin_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/", follow=True).content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.DONE and "The Test passed." in body


def test_a_viewer_sees_no_cancel_button_and_cannot_cancel(viewer_client, remote):
    job = jobs.enqueue(remote, Job.Kind.TEST)
    page = viewer_client.get(f"/settings/integrations/jobs/{job.pk}/").content.decode()
    assert "Waiting for remote node" in page and ">Cancel</button>" not in page
    assert viewer_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED


def test_cancel_is_a_post_with_a_csrf_token(admin_user, remote):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)
    job = jobs.enqueue(remote, Job.Kind.TEST)
    assert browser.get(f"/settings/integrations/jobs/{job.pk}/cancel/").status_code == 405
    assert browser.post(f"/settings/integrations/jobs/{job.pk}/cancel/").status_code == 403
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED


def test_cancelling_get_alerts_takes_the_waiting_line_off_the_actors_page(admin_client, remote):
    from defender.models import Actor

    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    admin_client.post(f"/actors/{actor.pk}/alerts/", {"integrations": [remote.pk], "window": "24h"})
    job = Job.objects.get(kind="alerts")
    assert ">Cancel</button>" in admin_client.get(f"/actors/{actor.pk}/").content.decode()
    response = admin_client.post(f"/settings/integrations/jobs/{job.pk}/cancel/", HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == f"/actors/{actor.pk}/"
    page = admin_client.get(f"/actors/{actor.pk}/").content.decode()
    assert "Waiting for remote node" not in page and "Get alerts from Defender DMZ was cancelled." in page


def test_a_test_whose_node_took_it_and_went_quiet_shows_why_once_its_time_bound_has_passed(admin_client, remote):
    node = remote.remote_node
    node.last_seen_at = timezone.now()
    node.save()
    admin_client.post(f"/settings/integrations/{remote.pk}/test/")
    run = TestRun.objects.get()
    jobs.claim_next(node)
    assert "dmz-node is running" in admin_client.get(run.get_absolute_url()).content.decode()
    Job.objects.filter(pk=run.job_id).update(answer_deadline=timezone.now() - timedelta(seconds=1))
    tasks.remote_job_housekeeping()
    body = admin_client.get(run.get_absolute_url()).content.decode()
    assert "The Test failed." in body and "remote node dmz-node took the job at " in body
    assert "and has not answered" in body


def test_a_remote_answer_records_the_window_as_asked_and_joins_the_window_last_asked(admin_client, remote):
    from defender.models import Actor, AlertFetch
    from defender.remote import wire
    from defender.services.alerts import AlertsResult, Window
    from tests.test_alert_store import defender_alert

    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    admin_client.post(f"/actors/{actor.pk}/alerts/", {"integrations": [remote.pk], "window": "1h"})
    job = jobs.claim_next(remote.remote_node)
    since, until = (datetime.fromisoformat(job.parameters[key]) for key in ("since", "until"))
    skew = timedelta(seconds=remote.clock_skew_seconds)
    # The node asked Defender for the window widened by the tolerance, as the services do.
    found = AlertsResult(
        [defender_alert("da-remote", created=until - timedelta(minutes=10))],
        ("ws-fin-07",),
        Window(since - skew, until + skew),
        "1 alert on ws-fin-07.corp.contoso.com.",
    )
    answers.complete(job, True, wire.alerts_result_to_wire(found), "")
    admin_client.get(f"/settings/integrations/jobs/{job.pk}/", HTTP_HX_REQUEST="true")

    fetch = AlertFetch.objects.get(actor=actor, integration=remote)
    assert (fetch.since, fetch.until, fetch.clock_skew_seconds) == (since, until, 300)
    page = admin_client.get(f"/actors/{actor.pk}/")
    assert [row.record.alert_id for row in page.context["table"].page.object_list] == ["da-remote"]
    assert "1 stored alert on ws-fin-07 in that window." in page.content.decode()


def test_a_get_alerts_no_node_claims_by_its_deadline_is_recorded_on_the_actors_page_with_the_reason(
    admin_client, remote
):
    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    admin_client.post(f"/actors/{actor.pk}/alerts/", {"integrations": [remote.pk], "window": "24h"})
    job = Job.objects.get(kind="alerts")
    Job.objects.filter(pk=job.pk).update(deadline=timezone.now() - timedelta(seconds=1))

    tasks.remote_job_housekeeping()
    page = admin_client.get(f"/actors/{actor.pk}/").content.decode()

    job.refresh_from_db()
    assert job.state == Job.State.EXPIRED
    fetch = AlertFetch.objects.get(actor=actor, integration=remote)
    assert not fetch.ok and "remote node dmz-node has never checked in" in fetch.message
    assert "Waiting for remote node" not in page and "remote node dmz-node has never checked in" in page


def test_an_answer_whose_records_cannot_be_stored_leaves_the_job_running_to_be_run_again(remote, monkeypatch):
    job = jobs.enqueue(remote, Job.Kind.TEST)
    claimed = jobs.claim_next(remote.remote_node)

    def refuse(job):
        raise DatabaseError("the database is read-only for a moment")

    monkeypatch.setattr(records, "record_remote_test", refuse)
    with pytest.raises(DatabaseError):
        answers.complete(claimed, True, {"steps": []}, "")

    job.refresh_from_db()
    assert job.state == Job.State.RUNNING and job.finished_at is None
    remote.refresh_from_db()
    assert remote.last_test_at is None


def test_the_queue_moves_a_job_to_its_end_without_recording_anything(remote):
    jobs.enqueue(remote, Job.Kind.TEST)
    claimed = jobs.claim_next(remote.remote_node)
    steps = [{"name": "DNS lookup", "outcome": "passed", "duration_ms": 2, "message": "127.0.0.1 is an IP address."}]

    assert jobs.end(jobs.answered(claimed, True, {"steps": steps}, ""))
    assert not jobs.end(jobs.answered(claimed, True, {"steps": steps}, ""))  # one claim ends once

    remote.refresh_from_db()
    assert Job.objects.get().state == Job.State.DONE and remote.last_test_at is None
