"""Scheduled health checks: every Test counts towards an integration's state, one notification when it goes down and
one when it recovers, the schedule as a django-celery-beat periodic task, and the status strip of the last 90."""

import json
import logging
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from defender import tasks
from defender.models import HealthState, Integration, Job, RemoteNode, TestRun
from defender.operations import health
from defender.services.steps import FAILED, PASSED, Step, TestResult
from tests.factories import integration_form_data, make_integration, simulator_integration
from tests.webhook_server import SECRET_PATH, WebhookServer

pytestmark = pytest.mark.django_db

FAILING = TestResult((Step("Token", FAILED, 5, "AADSTS7000215: the client secret is wrong."),))
PASSING = TestResult((Step("API call", PASSED, 5, "Defender answered."),))


@pytest.fixture
def webhook():
    with WebhookServer() as server:
        yield server


@pytest.fixture
def watched(clean_simulator, webhook, settings):
    """An integration of the simulator that notifies by email and webhook after 3 failures in a row."""
    settings.SITE_URL = "https://director.example.com"
    return simulator_integration(
        clean_simulator, notify_emails="soc@example.com\noncall@example.com", notify_webhook_url=webhook.url
    )


def scheduled_test(integration):
    tasks.scheduled_test.apply(args=[integration.pk], throw=True)
    integration.refresh_from_db()


def test_failures_in_a_row_notify_once_when_down_with_the_failing_step(watched, clean_simulator, webhook, mailoutbox):
    clean_simulator.faults.set(fail_next=1000, fail_status=503, applies_to="token")
    scheduled_test(watched)
    scheduled_test(watched)
    assert watched.consecutive_failures == 2
    assert watched.health_state != HealthState.DOWN
    assert webhook.received == [] and mailoutbox == []

    for _ in range(3):  # the third failure makes it down; the fourth and fifth tell nobody again
        scheduled_test(watched)

    assert watched.health_state == HealthState.DOWN
    assert watched.consecutive_failures == 5
    [body] = webhook.bodies
    assert body["state"] == "down"
    assert body["integration"] == watched.name
    assert body["failed_step"] == "Token"
    assert body["advice"] and body["advice"] in body["text"]
    assert "Token failed" in body["text"] and "3 Tests in a row" in body["text"]
    assert body["url"] == f"https://director.example.com/settings/integrations/{watched.pk}/"
    [email] = mailoutbox
    assert email.to == ["soc@example.com", "oncall@example.com"]
    assert email.subject == f"{watched.name} is down"
    assert "Failed step: Token" in email.body and body["url"] in email.body
    assert webhook.url not in email.body


def test_recovery_notifies_once(watched, clean_simulator, webhook, mailoutbox):
    clean_simulator.faults.set(fail_next=1000, fail_status=503, applies_to="token")
    for _ in range(3):
        scheduled_test(watched)
    clean_simulator.faults.clear()
    scheduled_test(watched)
    scheduled_test(watched)

    assert watched.health_state == HealthState.UP
    assert watched.consecutive_failures == 0
    assert [body["state"] for body in webhook.bodies] == ["down", "up"]
    up = webhook.bodies[1]
    assert up["text"] == f"{watched.name} has recovered: its Test passed again."
    assert up["failed_step"] == "" and up["advice"] == ""
    assert [email.subject for email in mailoutbox] == [f"{watched.name} is down", f"{watched.name} is up again"]


def test_a_pass_between_failures_starts_the_count_again(watched, clean_simulator, webhook):
    clean_simulator.faults.set(fail_next=1000, fail_status=503, applies_to="token")
    scheduled_test(watched)
    scheduled_test(watched)
    clean_simulator.faults.clear()
    scheduled_test(watched)
    clean_simulator.faults.set(fail_next=1000, fail_status=503, applies_to="token")
    scheduled_test(watched)
    scheduled_test(watched)
    assert watched.consecutive_failures == 2
    assert watched.health_state == HealthState.UP
    assert webhook.received == []


def test_two_tests_finishing_at_once_notify_once(webhook, settings):
    """Each finishing Test holds its own copy of the integration: the flip is decided by the database row."""
    integration = make_integration(notify_webhook_url=webhook.url, notify_after_failures=2)
    first, second = Integration.objects.get(pk=integration.pk), Integration.objects.get(pk=integration.pk)
    health.after_test(first, FAILING)
    health.after_test(first, FAILING)
    health.after_test(second, FAILING)  # still thinks the integration is unknown, with no failure counted
    assert [body["state"] for body in webhook.bodies] == ["down"]
    health.after_test(first, PASSING)
    health.after_test(second, PASSING)
    assert [body["state"] for body in webhook.bodies] == ["down", "up"]


def test_a_pressed_test_counts_as_history_and_towards_the_state(admin_client, clean_simulator, webhook):
    integration = simulator_integration(clean_simulator, notify_after_failures=1, notify_webhook_url=webhook.url)
    clean_simulator.faults.set(fail_next=1000, fail_status=503)  # the API call fails
    admin_client.post(reverse("defender:integration-test", args=[integration.pk]))

    [run] = health.history(integration).runs
    assert run.trigger == TestRun.Trigger.PRESSED and run.verdict == "failed"
    [body] = webhook.bodies
    assert body["failed_step"] == "API call"
    page = admin_client.get(reverse("defender:integration-detail", args=[integration.pk])).content.decode()
    assert "0 of 1 passed" in page
    assert "Pressed ·" in page


def test_a_failed_notification_is_logged_without_its_url_and_breaks_nothing(closed_port, caplog, mailoutbox):
    url = f"http://127.0.0.1:{closed_port}{SECRET_PATH}"
    integration = make_integration(notify_webhook_url=url, notify_emails="soc@example.com", notify_after_failures=1)
    with caplog.at_level(logging.DEBUG):
        health.after_test(integration, FAILING)
    assert integration.health_state == HealthState.DOWN
    assert len(mailoutbox) == 1  # the email still went
    assert "webhook notification" in caplog.text
    assert SECRET_PATH not in caplog.text and url not in caplog.text


def test_a_notification_goes_nowhere_when_no_address_is_set(mailoutbox):
    integration = make_integration(notify_after_failures=1)
    health.after_test(integration, FAILING)
    assert integration.health_state == HealthState.DOWN
    assert mailoutbox == []


# --- the scheduled task ----------------------------------------------------------------------------------------------


def test_a_scheduled_test_of_a_remote_integration_is_a_job_for_its_node(simulator):
    node = RemoteNode.objects.create(name="dmz-node")
    integration = simulator_integration(simulator, location=Integration.Location.REMOTE, remote_node=node)
    tasks.scheduled_test.apply(args=[integration.pk], throw=True)
    [job] = Job.objects.filter(integration=integration)
    assert job.kind == Job.Kind.TEST and job.state == Job.State.QUEUED and not job.runs_here
    assert job.test_run.trigger == TestRun.Trigger.SCHEDULED


def test_a_scheduled_test_of_a_disabled_integration_does_nothing():
    integration = make_integration(enabled=False)
    tasks.scheduled_test.apply(args=[integration.pk], throw=True)
    assert not TestRun.objects.exists()


def test_a_scheduled_test_of_a_deleted_integration_removes_its_schedule():
    integration = make_integration()
    health.set_schedule(integration, 15)
    pk = integration.pk
    Integration.objects.filter(pk=pk).update(health_check=None)  # as if the link were lost
    Integration.objects.filter(pk=pk).delete()
    tasks.scheduled_test.apply(args=[pk], throw=True)
    assert not PeriodicTask.objects.filter(task=health.SCHEDULED_TASK).exists()
    assert not TestRun.objects.exists()


def test_deleting_an_integration_deletes_its_periodic_task():
    integration = make_integration()
    health.set_schedule(integration, 15)
    integration.delete()
    assert not PeriodicTask.objects.filter(task=health.SCHEDULED_TASK).exists()


# --- the schedule on the form ----------------------------------------------------------------------------------------


def edit(admin_client, integration, **overrides):
    data = integration_form_data(client_secret="", **overrides)
    return admin_client.post(reverse("defender:integration-edit", args=[integration.pk]), data)


def test_the_form_creates_updates_and_removes_the_periodic_task(admin_client):
    integration = make_integration()
    assert edit(admin_client, integration, health_check_minutes="15").status_code == 302
    integration.refresh_from_db()
    task = integration.health_check
    assert task.task == "defender.tasks.scheduled_test"
    assert json.loads(task.args) == [integration.pk]
    assert (task.interval.every, task.interval.period) == (15, IntervalSchedule.MINUTES)
    assert task.name == f"Health check: Defender EU (integration {integration.pk})"
    assert task.enabled

    edit(admin_client, integration, name="Defender West", health_check_minutes="30")
    integration.refresh_from_db()
    assert integration.health_check.pk == task.pk
    assert integration.health_check.interval.every == 30
    assert integration.health_check.name == f"Health check: Defender West (integration {integration.pk})"

    edit(admin_client, integration, health_check_minutes="0")
    integration.refresh_from_db()
    assert integration.health_check is None
    assert not PeriodicTask.objects.filter(task=health.SCHEDULED_TASK).exists()


def test_a_new_integration_is_not_scheduled_unless_asked(admin_client):
    admin_client.post(reverse("defender:integration-add", args=["defender_atp"]), integration_form_data())
    integration = Integration.objects.get()
    assert integration.health_check is None
    assert integration.notify_after_failures == 3


def test_the_form_shows_the_interval_an_administrator_set_in_the_admin(admin_client):
    integration = make_integration()
    health.set_schedule(integration, 15)
    seconds, _ = IntervalSchedule.objects.get_or_create(every=90, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(pk=integration.health_check_id).update(interval=seconds)
    page = admin_client.get(reverse("defender:integration-edit", args=[integration.pk])).content.decode()
    assert re.search(r'name="health_check_minutes" value="2"', page)
    assert "every 90 seconds; shown as 2 minutes" in page

    # Saving the form without changing the number keeps the administrator's interval.
    edit(admin_client, integration, health_check_minutes="2")
    assert PeriodicTask.objects.get(pk=integration.health_check_id).interval == seconds


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("health_check_minutes", "-5", "greater than or equal to 0"),
        ("health_check_minutes", "eleven", "Enter a whole number"),
        ("notify_after_failures", "0", "greater than or equal to 1"),
        ("notify_emails", "soc@example.com, not-an-address", "Not an email address: not-an-address"),
        ("notify_webhook_url", "not a url", "Not a valid URL"),
        ("notify_webhook_url", "https://169.254.169.254/latest", "link-local"),
    ],
)
def test_errors_appear_next_to_their_fields_with_the_input_kept(admin_client, field, value, message):
    integration = make_integration()
    response = edit(admin_client, integration, **{field: value})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["form"].errors.keys() == {field}
    if field != "notify_webhook_url":
        assert f'value="{value}"' in response.content.decode() or value in response.content.decode()


def test_a_webhook_over_plain_http_is_refused_unless_debug(admin_client, settings, webhook):
    integration = make_integration()
    settings.DEBUG = False
    response = edit(admin_client, integration, notify_webhook_url=webhook.url)
    assert "must start with https://" in response.content.decode()
    settings.DEBUG = True
    assert edit(admin_client, integration, notify_webhook_url=webhook.url).status_code == 302
    integration.refresh_from_db()
    assert integration.notify_webhook_url == webhook.url


def test_the_webhook_is_write_only_kept_when_blank_and_removable(admin_client):
    url = "https://hooks.slack.com" + SECRET_PATH
    integration = make_integration(notify_webhook_url=url)
    assert edit(admin_client, integration, notify_emails="soc@example.com").status_code == 302
    integration.refresh_from_db()
    assert integration.notify_webhook_url == url
    assert edit(admin_client, integration, forget_webhook="on").status_code == 302
    integration.refresh_from_db()
    assert integration.notify_webhook_url == ""


def test_the_webhook_url_never_appears_in_a_page(admin_client, settings):
    settings.DEBUG = True
    url = "https://hooks.slack.com" + SECRET_PATH
    integration = make_integration(notify_webhook_url=url)
    pages = [
        reverse("defender:integration-list"),
        reverse("defender:integration-detail", args=[integration.pk]),
        reverse("defender:integration-edit", args=[integration.pk]),
    ]
    for page in pages:
        assert SECRET_PATH not in admin_client.get(page).content.decode(), page
    # A form that comes back with an error keeps a typed URL sealed, never in clear ...
    typed = "https://hooks.slack.com/services/T1/B1/typed-webhook-path-99"
    response = edit(admin_client, integration, port="99999", notify_webhook_url=typed)
    assert response.status_code == 200
    assert "typed-webhook-path-99" not in response.content.decode()
    assert "notify_webhook_url_kept" in response.content.decode()
    # ... and the next POST with the seal saves it.
    token = response.context["form"].kept_webhook_token
    edit(admin_client, integration, notify_webhook_url="", notify_webhook_url_kept=token)
    integration.refresh_from_db()
    assert integration.notify_webhook_url == typed


def test_the_admin_keeps_the_webhook_write_only(client, django_user_model):
    url = "https://hooks.slack.com" + SECRET_PATH
    integration = make_integration(notify_webhook_url=url)
    superuser = django_user_model.objects.create_superuser("root", password="pw-for-tests-only")
    client.force_login(superuser)
    page = client.get(reverse("admin:defender_integration_change", args=[integration.pk])).content.decode()
    assert SECRET_PATH not in page
    assert "A webhook is saved" in page


# --- the pages --------------------------------------------------------------------------------------------------------


def finished_runs(integration, verdicts):
    start = timezone.now() - timedelta(days=1)
    runs = [
        TestRun(
            subject=TestRun.Subject.INTEGRATION,
            integration=integration,
            title=integration.name,
            trigger=TestRun.Trigger.SCHEDULED if index % 2 else TestRun.Trigger.PRESSED,
            finished_at=start + timedelta(minutes=index),
            verdict=verdict,
            summary=f"run {index}",
        )
        for index, verdict in enumerate(verdicts)
    ]
    TestRun.objects.bulk_create(runs)


def test_the_strip_shows_the_last_90_oldest_left_in_their_colours(admin_client, django_assert_max_num_queries):
    integration = make_integration()
    verdicts = ["passed"] * 5 + ["failed"] * 3 + ["passed"] * 85 + ["failed", "passed"]  # 95 runs
    finished_runs(integration, verdicts)
    with django_assert_max_num_queries(1):
        runs = health.history(integration).runs
    assert [run.summary for run in runs[:2]] == ["run 5", "run 6"]  # the 5 oldest are past the 90

    page = admin_client.get(reverse("defender:integration-detail", args=[integration.pk])).content.decode()
    boxes = re.findall(r'class="status-box (status-\w+)" title="([^"]*)"', page)
    assert len(boxes) == 90
    assert [colour for colour, _ in boxes] == [
        "status-passed" if verdict == "passed" else "status-failed" for verdict in verdicts[5:]
    ]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · Scheduled · run 5", boxes[0][1])
    assert "86 of 90 passed" in page
    assert "style=" not in page.split('id="status-heading"')[1].split("</section>")[0]


def test_a_cancelled_run_is_no_outcome_on_the_strip(admin_client):
    integration = make_integration()
    finished_runs(integration, ["passed", "", "failed"])
    assert [run.verdict for run in health.history(integration).runs] == ["passed", "failed"]


def test_the_list_shows_each_state_without_a_query_per_row(admin_client, django_assert_max_num_queries):
    states = [(HealthState.UP, 0), (HealthState.DOWN, 4), (HealthState.UNKNOWN, 0), (HealthState.UP, 1)]
    for index, (state, failures) in enumerate(states):
        integration = make_integration(name=f"Integration {index}")
        Integration.objects.filter(pk=integration.pk).update(health_state=state, consecutive_failures=failures)
    with django_assert_max_num_queries(12) as few:
        page = admin_client.get(reverse("defender:integration-list")).content.decode()
    for index in range(4, 24):
        make_integration(name=f"Integration {index}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        admin_client.get(reverse("defender:integration-list"))
    assert ">Up</span>" in page and ">Down</span>" in page and ">Not tested</span>" in page
    assert "Failing (1 of 3)" in page
