"""A remote node from start to finish in a real browser: add it, start its agent with the command the page shows,
make an integration Remote, press Test and see it pass through the node."""

import re
import shlex
import subprocess
import sys

import pytest
from playwright.sync_api import expect

from defender.models import Integration
from tests.conftest import PASSWORD
from tests.factories import simulator_integration
from tests.fixtures.browser import page_in_new_context
from tests.remote_helpers import ROOT, make_node_with_token_file, remote_integration_for, start_agent, stop

pytestmark = pytest.mark.browser


@pytest.fixture
def secure_page(browser, site_over_https, settings, request):
    """A page on the site through its TLS front, as users and nodes reach a production site."""
    settings.SITE_URL = site_over_https.url
    settings.CSRF_TRUSTED_ORIGINS = [site_over_https.url]
    with page_in_new_context(
        browser, request, ignore_https_errors=True, viewport={"width": 1400, "height": 1000}
    ) as page:
        yield page


@pytest.fixture
def no_script_page(browser, request):
    """A page in a browser with JavaScript turned off: plain forms and refreshing pages only. It browses the site
    directly (the node still comes through TLS): the CSRF middleware remembers the first trusted origins it sees, and
    each TLS front has a port, and so an origin, of its own."""
    with page_in_new_context(browser, request, java_script_enabled=False) as page:
        yield page


def log_in_and_press_test(page, site_url, user, integration_name):
    page.goto(f"{site_url}/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{site_url}/settings/integrations/")
    page.get_by_role("row", name=integration_name).get_by_role("button", name="Test").click()


def test_without_javascript_a_remote_test_refreshes_its_runs_page_until_the_steps_show(
    no_script_page, live_server, site_over_https, admin_user, simulator, tmp_path
):
    page = no_script_page
    node, token_file = make_node_with_token_file(tmp_path)
    remote_integration_for(simulator, node)
    log_in_and_press_test(page, live_server.url, admin_user, "Defender behind the DMZ")
    expect(page.get_by_text("Waiting for remote node dmz-node…")).to_be_visible()
    agent = start_agent(site_over_https, token_file)  # the node starts only now: the page has refreshed meanwhile
    try:
        expect(page.get_by_text("The Test passed.")).to_be_visible(timeout=60_000)
    finally:
        output = stop(agent)
    assert re.fullmatch(rf"{live_server.url}/settings/test-runs/\d+/", page.url), output
    expect(page.locator("li.step-passed", has_text="API call")).to_be_visible()
    expect(page.get_by_text("Method Not Allowed")).to_have_count(0)


def test_without_javascript_an_administrator_cancels_a_test_no_node_picks_up(
    no_script_page, live_server, admin_user, simulator, tmp_path
):
    page = no_script_page
    node, _token_file = make_node_with_token_file(tmp_path)
    remote_integration_for(simulator, node)
    log_in_and_press_test(page, live_server.url, admin_user, "Defender behind the DMZ")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_text("Test of Defender behind the DMZ cancelled.")).to_be_visible()
    expect(page.get_by_text(f"Cancelled by {admin_user.username} at ")).to_be_visible()
    page.wait_for_timeout(2500)  # longer than the waiting page's refresh: this page no longer refreshes
    expect(page.get_by_text("Cancelled by")).to_be_visible()


def start_agent_from(command, token_file, ca_path):
    """Run the command the page showed, with this machine's Python and the token saved where the page said."""
    arguments = shlex.split(command)
    assert arguments[:3] == ["python", "manage.py", "run_remote_node"]
    arguments[arguments.index("--token-file") + 1] = str(token_file)
    arguments = [sys.executable, *arguments[1:], "--ca-file", str(ca_path), "--wait", "2"]
    environment = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        arguments, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_remote_node_runs_the_test_of_an_integration_switched_to_remote(
    secure_page, site_over_https, admin_user, simulator, tmp_path, docs_screenshot
):
    page = secure_page
    integration = simulator_integration(simulator, name="Defender behind the DMZ", read_timeout=30.0)
    page.goto(f"{site_over_https.url}/accounts/login/")
    page.get_by_label("Username").fill(admin_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.get_by_role("button", name="Settings").click()
    page.get_by_role("link", name="Remote Nodes").click()
    page.get_by_role("link", name="Add Remote Node").click()
    page.get_by_label("Name").fill("dmz-node")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Copy the token now.")).to_be_visible()
    token = page.get_by_label("Access token").input_value()
    command = page.locator("#node-command").inner_text()
    assert command.startswith(f"python manage.py run_remote_node --site {site_over_https.url} ")
    token_file = tmp_path / "node-token.txt"
    token_file.write_text(token)
    agent = start_agent_from(command, token_file, site_over_https.ca_path)
    try:
        page.goto(f"{site_over_https.url}/settings/integrations/{integration.pk}/edit/")
        page.get_by_label("Remote", exact=True).check()
        page.get_by_label("Remote node").select_option(label="dmz-node")
        page.get_by_label("Client Secret").fill(simulator.app.client_secret)
        page.get_by_role("button", name="Submit").click()
        row = page.get_by_role("row", name="Defender behind the DMZ")
        expect(row).to_contain_text("via dmz-node")

        row.get_by_role("button", name="Test").click()
        expect(page.get_by_text("The Test passed.")).to_be_visible(timeout=60_000)
        for step in ("DNS lookup", "TCP connection", "TLS handshake", "Token", "Permissions", "API call"):
            expect(page.locator("li.step-passed", has_text=step).first).to_be_visible()
        expect(row.get_by_text("Passed")).to_be_visible()
        docs_screenshot(page, "remote-test")

        page.get_by_role("button", name="Settings").click()
        page.get_by_role("link", name="Remote Nodes").click()
        node_row = page.get_by_role("row", name="dmz-node")
        expect(node_row.get_by_text("Online")).to_be_visible()
        expect(node_row).to_contain_text("Defender behind the DMZ")
        docs_screenshot(page, "remote-nodes")
    finally:
        output = stop(agent)
    assert token not in output and simulator.app.client_secret not in output
    integration.refresh_from_db()
    assert integration.location == Integration.Location.REMOTE and integration.last_test_ok
