"""Settings > Integrations in a real browser: presets, the Test step by step, Submit, the list's badge, and viewers."""

import re
import threading

import pytest
from playwright.sync_api import expect

from defender import presets
from tests.conftest import PASSWORD
from tests.factories import make_integration, simulator_integration
from tests.fixtures.browser import page_in_new_context

pytestmark = pytest.mark.browser

STEPS = ("DNS lookup", "TCP connection", "TLS handshake", "Token", "Permissions", "API call")


def open_add_form(page):
    page.get_by_role("button", name="Settings").click()
    page.get_by_role("link", name="Integrations").click()
    page.get_by_role("button", name="Add Integration").click()
    page.get_by_role("link", name="Defender ATP").click()
    expect(page.get_by_role("heading", name="Add Integration: Defender ATP")).to_be_visible()
    # The heading shows before the scripts at the end of the page have run; a field changed before then would not
    # be seen by the form's script. The load event comes after them.
    page.wait_for_load_state("load")


def type_simulator_values(page, simulator, port=None):
    """Type the simulator's values into the open Add Integration form, as run_simulator prints them."""
    page.get_by_label("Name").fill("Simulator")
    page.get_by_label("Host").fill(simulator.host)
    page.get_by_label("Port").fill(str(port or simulator.port))
    page.get_by_label("Client ID").fill(simulator.app.client_id)
    page.get_by_label("Client Secret").fill(simulator.app.client_secret)
    page.get_by_label("Auth URL").fill(simulator.auth_url)
    page.get_by_label("Tenant ID").fill(simulator.tenant_id)
    page.get_by_role("button", name="Advanced options").click()
    page.get_by_label("CA certificate").fill(simulator.ca_pem)


def expect_steps(page, outcome, names):
    for name in names:
        step_name = page.locator(".step-name", has_text=re.compile(f"^{re.escape(name)}$"))
        expect(page.locator(f"li.step-{outcome}").filter(has=step_name)).to_be_visible()


def test_adding_an_integration_from_a_preset_testing_it_and_seeing_it_pass_in_the_list(
    page, live_server, log_in, admin_user, simulator, docs_screenshot
):
    log_in(admin_user.username, PASSWORD)
    open_add_form(page)

    eu = presets.get_preset(presets.MDE, "eu")
    page.get_by_label("Auth URL").fill("")
    page.get_by_label("Resource").fill("")
    page.get_by_role("button", name="EU", exact=True).click()
    expect(page.get_by_label("Host")).to_have_value(eu.host)
    expect(page.get_by_label("Auth URL")).to_have_value(eu.auth_url)
    expect(page.get_by_label("Resource")).to_have_value(eu.resource)

    type_simulator_values(page, simulator)
    docs_screenshot(page, "integration-form")

    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    expect_steps(page, "passed", STEPS)
    docs_screenshot(page, "integration-test")

    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("Integration Simulator was added.")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Simulator"))
    # The Test that passed on the form, with the values Submit saved, is the new row's last Test.
    expect(row.locator(".badge", has_text="Passed")).to_be_visible()
    row.get_by_role("button", name="Test").click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    badge = row.locator(".badge", has_text="Passed")
    expect(badge).to_be_visible()
    expect(badge).to_have_class(re.compile("text-bg-success"))
    expect(badge).to_have_attribute("title", re.compile("All steps passed"))
    docs_screenshot(page, "integrations-list")


def test_a_wrong_secret_fails_the_token_step_with_the_advice_about_the_secrets_value(
    page, live_server, log_in, admin_user, simulator
):
    integration = simulator_integration(simulator)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/edit/")
    expect(page.get_by_text("A secret is saved")).to_be_visible()
    page.get_by_label("Client Secret").fill("not-the-secret-value")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test failed.")).to_be_visible()
    token = page.locator("li.step-failed").filter(has=page.locator(".step-name", has_text=re.compile("^Token$")))
    expect(token).to_contain_text("paste the secret's Value, not its ID")
    expect_steps(page, "skipped", ("Permissions", "API call"))
    integration.refresh_from_db()
    assert integration.last_test_at is None  # a Test on the form saves nothing


def test_the_test_on_the_form_with_an_error_shows_it_next_to_its_field(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)
    open_add_form(page)
    page.get_by_label("Port").fill("70000")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.locator("#id_port.is-invalid")).to_be_visible()
    expect(page.get_by_text("Enter a port between 1 and 65535.")).to_be_visible()
    expect(page.get_by_label("Port")).to_have_value("70000")


def test_switching_the_api_flavour_never_overwrites_a_typed_host(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)

    def late(route):  # the form's script arrives late, as on a slow link: the form is used only once it has run
        page.wait_for_timeout(1000)  # yields to the test meanwhile, unlike a sleep
        route.continue_()

    page.route("**/js/integration-form*.js", late)
    open_add_form(page)
    graph = presets.default_preset(presets.GRAPH)
    siem = presets.default_preset(presets.SIEM)

    page.get_by_label("API flavour").select_option(label="Microsoft Graph")
    expect(page.get_by_label("Host")).to_have_value(graph.host)
    expect(page.get_by_label("Resource")).to_have_value(graph.resource)
    expect(page.get_by_text("SecurityAlert.Read.All")).to_be_visible()
    expect(page.get_by_text("WindowsDefenderATP")).to_be_hidden()

    page.get_by_label("Host").fill("defender-gateway.corp.example")
    page.get_by_label("API flavour").select_option(label="Legacy SIEM API")
    expect(page.get_by_label("Host")).to_have_value("defender-gateway.corp.example")
    expect(page.get_by_label("Resource")).to_have_value(siem.resource)
    expect(page.get_by_text("registered for the SIEM connector")).to_be_visible()

    page.get_by_role("button", name="More").click()
    page.get_by_role("button", name="US GCC", exact=True).click()
    expect(page.get_by_label("Host")).to_have_value(presets.get_preset(presets.SIEM, "gcc").host)


def test_a_viewer_finds_no_test_edit_or_delete(page, live_server, log_in, viewer_user):
    integration = make_integration()
    log_in(viewer_user.username, PASSWORD)
    expect(page.get_by_role("link", name=integration.name)).to_be_visible()
    for name in ("Test", "Edit", "Delete", "Add Integration"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    page.get_by_role("link", name=integration.name).click()
    expect(page.get_by_role("heading", name=integration.name)).to_be_visible()
    for name in ("Test", "Edit", "Delete"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
        expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)


UNLABELLED_FIELDS = """
() => [...document.querySelectorAll("main input, main select, main textarea")]
  .filter((field) => field.type !== "hidden")
  .filter((field) => !(field.labels && field.labels.length) && !field.getAttribute("aria-label")
                     && !field.getAttribute("aria-labelledby"))
  .map((field) => field.name || field.id)
"""


def test_every_field_of_the_forms_has_a_label(page, live_server, log_in, admin_user):
    rule = make_integration().proxy_rule
    log_in(admin_user.username, PASSWORD)
    for path in ("/settings/integrations/add/defender_atp/", "/settings/proxy-rules/add/"):
        page.goto(f"{live_server.url}{path}")
        assert page.evaluate(UNLABELLED_FIELDS) == [], path
    assert rule is None


def test_the_form_can_be_used_with_the_keyboard_alone(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/add/defender_atp/")
    page.get_by_label("Name").focus()
    page.keyboard.type("Keyboard only")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Local")).to_be_focused()


def test_the_test_shows_each_step_as_soon_as_it_is_known(
    page, live_server, log_in, admin_user, clean_simulator, monkeypatch
):
    integration = simulator_integration(clean_simulator)
    # The simulator holds Defender's API answer until the page has shown the steps before it.
    api_may_answer = threading.Event()
    decide = clean_simulator.faults.decide

    def decide_when_released(kind):
        if kind == "api":
            api_may_answer.wait(timeout=30)
        return decide(kind)

    monkeypatch.setattr(clean_simulator.faults, "decide", decide_when_released)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/")
    try:
        page.get_by_role("button", name="Test", exact=True).click()
        expect_steps(page, "passed", ("DNS lookup", "TCP connection", "TLS handshake", "Token"))
        expect(page.get_by_role("status")).to_contain_text("Testing…")
        expect(page.locator(".step-name", has_text="API call")).to_have_count(0)
    finally:
        api_may_answer.set()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    expect_steps(page, "passed", ("API call",))
    expect(page.get_by_role("status")).to_be_hidden()
    expect(page.locator(f"#integration-{integration.pk}-badge")).to_contain_text("Passed")


def test_without_javascript_a_test_leads_to_its_page_which_refreshes_until_the_steps_show(
    browser, request, live_server, admin_user, simulator
):
    integration = simulator_integration(simulator)
    with page_in_new_context(browser, request, java_script_enabled=False) as page:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(admin_user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("row", name=integration.name).get_by_role("button", name="Test").click()
        expect(page.get_by_text("The Test passed.")).to_be_visible()
        assert re.fullmatch(rf"{live_server.url}/settings/test-runs/\d+/", page.url)
        expect_steps(page, "passed", STEPS)
        page.get_by_role("link", name="All integrations").click()
        expect(page.get_by_role("row", name=integration.name).locator(".badge", has_text="Passed")).to_be_visible()
