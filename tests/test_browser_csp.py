"""The Content-Security-Policy in a real browser: every main page works with only the site's own scripts and styles,
Chromium reports no violation, and the pages' scripts (the integration form, the Test, copy buttons) still work."""

import re

import pytest
from playwright.sync_api import expect

from defender import alert_store, presets
from defender.models import Integration, RemoteNode
from tests.conftest import PASSWORD
from tests.factories import make_actor, make_integration, make_proxy_rule, simulator_integration
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.browser

VIOLATION = re.compile(r"Content Security Policy|Refused to (apply|execute|load)", re.IGNORECASE)


@pytest.fixture
def watched(page):
    """The page, with what Chromium said in its console about the policy and every response that was not found."""
    violations, missing = [], []
    page.on("console", lambda message: VIOLATION.search(message.text) and violations.append(message.text))
    page.on("response", lambda response: response.status == 404 and missing.append(response.url))
    return page, violations, missing


def open_page(page, url):
    response = page.goto(url)
    assert response.status == 200, url
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy, url
    assert "no-store" in response.headers["cache-control"].split(", "), url
    page.wait_for_load_state("networkidle")


def test_every_main_page_runs_without_a_policy_violation(watched, live_server, log_in, admin_user, simulator):
    page, violations, missing = watched
    rule = make_proxy_rule()
    node = RemoteNode.objects.create(name="dmz-node")
    integration = simulator_integration(simulator, proxy_rule=None)
    make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node, proxy_rule=rule)
    actor = make_actor()
    alert_store.store_alerts(actor, integration, [defender_alert("da1"), defender_alert("da2", severity="High")])

    open_page(page, f"{live_server.url}/accounts/login/")
    log_in(admin_user.username, PASSWORD)
    for path in (
        "/settings/integrations/",
        "/settings/integrations/add/",
        f"/settings/integrations/{integration.pk}/",
        f"/settings/integrations/{integration.pk}/edit/",
        "/settings/proxy-rules/",
        f"/settings/proxy-rules/{rule.pk}/",
        f"/settings/proxy-rules/{rule.pk}/edit/",
        f"/settings/proxy-rules/{rule.pk}/integrations/",
        "/settings/remote-nodes/",
        f"/settings/remote-nodes/{node.pk}/",
        "/actors/",
        "/actors/add/",
        f"/actors/{actor.pk}/",
    ):
        open_page(page, f"{live_server.url}{path}")

    # Bootstrap's menus and collapses, and htmx's indicator, under the policy.
    page.get_by_role("button", name="Settings").click()
    expect(page.get_by_role("link", name="Proxy Rules")).to_be_visible()
    page.get_by_label("Last 30 days").check()
    page.get_by_role("button", name="Get alerts").click()
    expect(page.locator(".badge", has_text="Answered").first).to_be_visible()

    # The Test's run polls itself through htmx; test-panel.js places it.
    open_page(page, f"{live_server.url}/settings/integrations/{integration.pk}/")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()

    assert violations == []
    assert missing == []


def test_the_integration_forms_script_works_under_the_policy(watched, live_server, log_in, admin_user):
    page, violations, missing = watched
    RemoteNode.objects.create(name="dmz-node")
    log_in(admin_user.username, PASSWORD)
    open_page(page, f"{live_server.url}/settings/integrations/add/defender_atp/")

    # The API flavour switches the defaults and the permissions help.
    graph = presets.default_preset(presets.GRAPH)
    page.get_by_label("API flavour").select_option(label="Microsoft Graph")
    expect(page.get_by_label("Host")).to_have_value(graph.host)
    expect(page.get_by_text("SecurityAlert.Read.All")).to_be_visible()
    # A region preset fills Host, Auth URL and Resource.
    eu = presets.get_preset(presets.MDE, "eu")
    page.get_by_label("API flavour").select_option(label="Defender for Endpoint API")
    page.get_by_role("button", name="EU", exact=True).click()
    expect(page.get_by_label("Host")).to_have_value(eu.host)
    # The remote node choice shows only for Remote.
    expect(page.get_by_label("Remote node")).to_be_hidden()
    page.get_by_label("Remote", exact=True).check()
    expect(page.get_by_label("Remote node")).to_be_visible()
    page.get_by_label("Local", exact=True).check()
    expect(page.get_by_label("Remote node")).to_be_hidden()
    # Advanced options open (Bootstrap's collapse).
    page.get_by_role("button", name="Advanced options").click()
    expect(page.get_by_label("CA certificate")).to_be_visible()
    # The Test on the form with an error puts it next to its field (htmx swaps the form).
    page.get_by_label("Port").fill("70000")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("Enter a port between 1 and 65535.")).to_be_visible()

    assert violations == []
    assert missing == []


def test_the_token_pages_copy_button_works_from_the_sites_own_script(watched, live_server, log_in, admin_user):
    page, violations, _ = watched
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(admin_user.username, PASSWORD)
    open_page(page, f"{live_server.url}/settings/remote-nodes/add/")
    page.get_by_label("Name").fill("dmz-node")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name="Start the agent on dmz-node")).to_be_visible()
    token = page.get_by_label("Access token").input_value()

    page.get_by_role("button", name="Copy").first.click()

    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    assert violations == []


def test_the_browser_reports_an_inline_style_or_script_as_a_violation(watched, live_server, log_in, admin_user):
    """The console listener of the tests above does hear violations: an injected inline script and style are refused."""
    page, violations, _ = watched
    log_in(admin_user.username, PASSWORD)
    page.evaluate(
        """() => {
            document.body.insertAdjacentHTML("beforeend", '<p id="probe" style="color: rgb(255, 0, 0)">probe</p>');
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true";
            document.body.appendChild(script);
        }"""
    )

    expect(page.locator("#probe")).not_to_have_css("color", "rgb(255, 0, 0)")
    assert page.evaluate("window.inlineRan === undefined")
    for _ in range(50):  # console messages arrive asynchronously
        if any("style-src" in v for v in violations) and any("script-src" in v for v in violations):
            break
        page.wait_for_timeout(100)
    assert any("style-src" in violation for violation in violations)
    assert any("script-src" in violation for violation in violations)
