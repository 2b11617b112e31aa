"""Add Integration in a real browser after a field error: the form is in the same working state as before."""

import re

import pytest
from playwright.sync_api import expect

from defender.models import Integration, RemoteNode
from tests.conftest import PASSWORD
from tests.test_browser_integrations import type_simulator_values

pytestmark = pytest.mark.browser


def test_after_a_field_error_the_test_streams_again_the_secret_is_kept_and_submit_saves(
    page, live_server, log_in, admin_user, simulator
):
    RemoteNode.objects.create(name="dmz-node")  # so that a Remote node selector exists, and must stay hidden
    log_in(admin_user.username, PASSWORD)
    add = f"{live_server.url}/settings/integrations/add/defender_atp/"
    page.goto(add)
    type_simulator_values(page, simulator, port=70000)

    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("Enter a port between 1 and 65535.")).to_be_visible()
    expect(page.get_by_label("Port")).to_be_focused()
    expect(page.get_by_label("Remote node")).to_be_hidden()
    expect(page.get_by_text("The secret you typed is kept")).to_be_visible()
    assert simulator.app.client_secret not in page.content()

    page.get_by_label("Port").fill(str(simulator.port))
    with page.expect_response(re.compile(r"/test/$")) as test_call:
        page.get_by_role("button", name="Test", exact=True).click()
    # The Test ran in place (htmx's request header), not as a full-page POST.
    assert test_call.value.request.headers.get("hx-request") == "true"
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    assert page.url == add

    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Integration Simulator was added.")).to_be_visible()
    integration = Integration.objects.get(name="Simulator")
    assert integration.client_secret == simulator.app.client_secret
    assert integration.last_test_ok is True  # the Test that passed on the form, recorded by Submit
