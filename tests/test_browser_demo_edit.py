"""The demo integration in a real browser: its Edit page, unchanged, tests and submits with the saved secret (the
browser posts the CA certificate with CRLF line endings; the seed stored it with LF)."""

import re

import pytest
from playwright.sync_api import expect

from defender.demo import DEMO_INTEGRATION, seed_demo
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_the_demo_integration_tests_and_submits_unchanged_with_its_saved_secret(
    page, live_server, log_in, admin_user, simulator
):
    integration = seed_demo(simulator)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/edit/")
    expect(page.get_by_text("A secret is saved")).to_be_visible()

    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    expect(page.get_by_text("Type the client secret again")).to_have_count(0)

    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text(f"Integration {DEMO_INTEGRATION} was saved.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile(re.escape(DEMO_INTEGRATION)))
    row.get_by_role("button", name="Test").click()
    expect(row.locator(".badge", has_text="Passed")).to_be_visible()
