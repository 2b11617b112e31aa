"""The Add/Edit form's Test in a real browser, as a new user meets it: a Test that tested nothing is never green."""

import pytest
from playwright.sync_api import expect

from defender.models import Integration, RemoteNode
from tests.conftest import PASSWORD
from tests.factories import make_integration

pytestmark = pytest.mark.browser


def test_the_test_of_an_unsaved_remote_integration_says_what_to_do_and_is_not_green(
    page, live_server, log_in, admin_user
):
    node = RemoteNode.objects.create(name="dmz-node")
    integration = make_integration(location=Integration.Location.REMOTE, remote_node=node)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/edit/")
    page.get_by_label("Name").fill("Defender behind the DMZ")
    page.get_by_role("button", name="Test", exact=True).click()
    outcome = page.locator(".test-outcome")
    expect(outcome).to_contain_text("Nothing was tested.")
    expect(outcome).to_contain_text("runs on node dmz-node")
    expect(page.get_by_text("The Test passed.")).to_have_count(0)
