"""Settings > System: the engine's workers, its queue, the schedules and each integration's last health check, for
administrators only, in a fixed number of queries."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from defender.models import Integration
from tests.factories import make_integration
from tests.test_health_endpoints import BROKER_PASSWORD, broker_at, fresh_worker  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "/settings/system/"


def every_quarter_hour(name, **fields):
    interval, _ = IntervalSchedule.objects.get_or_create(every=15, period=IntervalSchedule.MINUTES)
    return PeriodicTask.objects.create(name=name, task="defender.tasks.run_test", interval=interval, **fields)


def nightly(name, **fields):
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="30", hour="3")
    return PeriodicTask.objects.create(name=name, task="defender.tasks.get_alerts", crontab=crontab, **fields)


def record_last_test(integration, ok, summary, state):
    Integration.objects.filter(pk=integration.pk).update(
        last_test_at=timezone.now(),
        last_test_ok=ok,
        last_test_summary=summary,
        health_state=state,
        consecutive_failures=0 if ok else 3,
    )


def test_an_administrator_sees_the_workers_with_their_versions_and_which_are_online(admin_client):
    fresh_worker(hostname="celery@worker-1")
    fresh_worker(hostname="celery@worker-gone", seen_ago=timedelta(minutes=10))
    html = admin_client.get(URL).content.decode()
    assert "1 online" in html
    assert "celery@worker-1" in html and "celery@worker-gone" in html
    assert "5.7.0" in html
    assert "Not heard from" in html
    assert "Online" in html


def test_with_no_worker_the_page_says_how_to_start_one(admin_client):
    html = admin_client.get(URL).content.decode()
    assert "0 online" in html
    assert "No worker has reported" in html
    assert "celery -A integrations_site worker" in html


def test_the_queue_length_is_the_brokers(admin_client, celery_in_memory):
    from defender.tasks import remote_job_housekeeping

    # Sent to the suite's memory broker, where no worker takes it.
    remote_job_housekeeping.apply_async()
    remote_job_housekeeping.apply_async()
    try:
        assert "2 tasks waiting for a worker." in admin_client.get(URL).content.decode()
    finally:
        with celery_in_memory.connection_for_write() as broker:
            broker.default_channel.queue_purge(celery_in_memory.conf.task_default_queue)


def test_an_unreachable_broker_is_shown_as_a_problem_without_its_password(admin_client, broker_at, closed_port):  # noqa: F811
    broker_at(f"redis://:{BROKER_PASSWORD}@127.0.0.1:{closed_port}/4")
    response = admin_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "The broker could not be reached (OperationalError)." in html
    assert BROKER_PASSWORD not in html


def test_the_schedules_show_their_timing_state_and_last_run_and_name_their_integration(admin_client):
    integration = make_integration(name="Defender EU")
    health_check = every_quarter_hour("Health check: Defender EU", last_run_at=timezone.now(), total_run_count=42)
    Integration.objects.filter(pk=integration.pk).update(health_check=health_check)
    nightly("Nightly alerts", enabled=False)
    html = admin_client.get(URL).content.decode()
    assert "Health check: Defender EU" in html
    assert "every 15 minutes" in html
    assert "<td>42</td>" in html
    assert f'health check of <a href="/settings/integrations/{integration.pk}/">Defender EU</a>' in html
    assert "Nightly alerts" in html
    assert "crontab 30 3 * * *" in html
    assert "defender.tasks.get_alerts" in html
    assert "<td>No</td>" in html
    assert "Never" in html


def test_each_integrations_last_health_check_is_shown_with_a_link(admin_client):
    up = make_integration(name="Defender EU")
    down = make_integration(name="Defender US")
    make_integration(name="Defender Asia")
    record_last_test(up, True, "All 6 steps passed.", Integration.HealthState.UP)
    record_last_test(down, False, "Token: the client secret has expired.", Integration.HealthState.DOWN)
    html = admin_client.get(URL).content.decode()
    assert f'href="/settings/integrations/{up.pk}/">Defender EU</a>' in html
    assert "All 6 steps passed." in html
    assert "Token: the client secret has expired." in html
    assert "3 failed in a row" in html
    assert "Never tested" in html
    assert ">Up<" in html and ">Down<" in html and ">Not tested<" in html


def test_a_viewer_is_refused_the_page_and_not_shown_it_in_the_navigation(viewer_client, admin_user):
    assert viewer_client.get(URL).status_code == 403
    assert 'href="/settings/system/"' not in viewer_client.get("/settings/integrations/").content.decode()
    administrator = Client()
    administrator.force_login(admin_user)
    assert 'href="/settings/system/"' in administrator.get("/settings/integrations/").content.decode()


def test_an_anonymous_visitor_is_sent_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def grow(count, start):
    for number in range(start, start + count):
        integration = make_integration(name=f"Defender {number:03}")
        record_last_test(integration, number % 2 == 0, f"Summary {number}", Integration.HealthState.UP)
        health_check = (every_quarter_hour if number % 2 else nightly)(f"Health check {number:03}")
        Integration.objects.filter(pk=integration.pk).update(health_check=health_check)
        fresh_worker(hostname=f"celery@worker-{number:03}")


def test_the_page_reads_the_same_few_queries_however_many_schedules_integrations_and_workers(
    admin_user, django_assert_max_num_queries
):
    client = Client()
    client.force_login(admin_user)
    grow(2, start=0)
    client.get(URL)  # the permission cache and the like, once
    with CaptureQueriesContext(connection) as few:
        assert client.get(URL).status_code == 200
    grow(25, start=100)
    with django_assert_max_num_queries(len(few)):
        html = client.get(URL).content.decode()
    assert "Health check 124" in html and "Defender 124" in html and "celery@worker-124" in html
    assert len(few) <= 8, [query["sql"] for query in few.captured_queries]
