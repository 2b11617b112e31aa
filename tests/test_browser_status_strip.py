"""The status strip in a real browser: its boxes coloured by the site's stylesheet (no style attribute, which the
Content-Security-Policy refuses), a title on each, and the text summary."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from defender.models import HealthState, Integration, TestRun
from defender.operations import health
from tests.conftest import PASSWORD
from tests.factories import make_integration

pytestmark = pytest.mark.browser

GREEN = "rgb(25, 135, 84)"  # Bootstrap's --bs-success
RED = "rgb(220, 53, 69)"  # Bootstrap's --bs-danger


def a_day_of_checks(integration):
    """90 scheduled checks every 15 minutes, with an outage of five failed Tests (its token refused) and a pressed
    Test after the fix."""
    start = timezone.now() - timedelta(minutes=15 * 90)
    outage = range(52, 57)
    runs = []
    for index in range(90):
        failed = index in outage
        runs.append(
            TestRun(
                subject=TestRun.Subject.INTEGRATION,
                integration=integration,
                title=integration.name,
                trigger=TestRun.Trigger.PRESSED if index == 57 else TestRun.Trigger.SCHEDULED,
                finished_at=start + timedelta(minutes=15 * index),
                verdict="failed" if failed else "passed",
                summary="Token failed: AADSTS7000215: the client secret is wrong." if failed else "All steps passed.",
            )
        )
    TestRun.objects.bulk_create(runs)


def test_the_strip_shows_green_and_red_boxes_with_their_titles(page, live_server, log_in, admin_user, docs_screenshot):
    integration = make_integration(name="Defender EU")
    health.set_schedule(integration, 15)
    Integration.objects.filter(pk=integration.pk).update(health_state=HealthState.UP)
    a_day_of_checks(integration)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)

    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/")
    section = page.locator("section[aria-labelledby=status-heading]")
    expect(section.get_by_text("85 of 90 passed").first).to_be_visible()
    expect(section.get_by_text("Health check every 15 minutes")).to_be_visible()
    boxes = section.locator(".status-box")
    expect(boxes).to_have_count(90)
    assert boxes.nth(0).evaluate("box => getComputedStyle(box).backgroundColor") == GREEN
    assert boxes.nth(52).evaluate("box => getComputedStyle(box).backgroundColor") == RED
    assert "Scheduled · Token failed" in boxes.nth(52).get_attribute("title")
    assert "Pressed · All steps passed." in boxes.nth(57).get_attribute("title")
    assert boxes.nth(0).bounding_box()["width"] >= 3
    assert not [error for error in errors if "Content Security Policy" in error]
    docs_screenshot(page, "status-strip", element=section)
