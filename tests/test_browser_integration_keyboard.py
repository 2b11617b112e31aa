"""Add Integration and the list by keyboard and mouse: the chosen region preset shows as chosen, a flavour switch keeps
the region, More reads Less once open, a focused preset looks focused rather than disabled, and a Test pressed on a
row shows its result by that row and takes the focus."""

import re

import pytest
from playwright.sync_api import expect

from defender import presets
from tests.conftest import PASSWORD
from tests.factories import simulator_integration

pytestmark = pytest.mark.browser


@pytest.fixture
def add_form(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/add/defender_atp/")
    return page


def visible_preset(page, label):
    return page.locator(".host-presets:not([hidden])").get_by_role("button", name=label, exact=True)


def test_the_chosen_preset_shows_as_pressed_and_only_it(add_form):
    page = add_form
    expect(visible_preset(page, "Global")).to_have_attribute("aria-pressed", "true")
    visible_preset(page, "EU").click()
    expect(visible_preset(page, "EU")).to_have_attribute("aria-pressed", "true")
    expect(visible_preset(page, "Global")).to_have_attribute("aria-pressed", "false")
    page.get_by_label("Host").fill("defender.lab.example")
    expect(visible_preset(page, "EU")).to_have_attribute("aria-pressed", "false")


def test_switching_the_api_flavour_keeps_the_chosen_region_where_the_flavour_has_it(add_form):
    page = add_form
    visible_preset(page, "EU").click()
    page.get_by_label("API flavour").select_option(presets.SIEM)
    expect(page.get_by_label("Host")).to_have_value(presets.get_preset(presets.SIEM, "eu").host)
    expect(visible_preset(page, "EU")).to_have_attribute("aria-pressed", "true")
    # Graph has no EU host: the flavour's default, shown as chosen.
    page.get_by_label("API flavour").select_option(presets.GRAPH)
    expect(page.get_by_label("Host")).to_have_value(presets.default_preset(presets.GRAPH).host)
    expect(visible_preset(page, "Global")).to_have_attribute("aria-pressed", "true")


def test_more_reads_less_while_the_other_regions_are_open(add_form):
    page = add_form
    group = page.locator(".host-presets:not([hidden])")
    group.get_by_role("button", name="More").click()
    expect(visible_preset(page, "Switzerland")).to_be_visible()
    group.get_by_role("button", name="Less").click()
    expect(visible_preset(page, "Switzerland")).to_be_hidden()
    expect(group.get_by_role("button", name="More")).to_be_visible()


def test_a_preset_reached_by_keyboard_has_a_visible_focus_ring(add_form):
    page = add_form
    page.get_by_label("Host").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.dataset.presetKey")
    assert focused == "global"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_a_test_pressed_on_a_low_row_shows_below_that_row_and_takes_the_focus(
    page, live_server, log_in, admin_user, simulator
):
    for number in range(30):
        simulator_integration(simulator, name=f"Integration {number:02}")
    log_in(admin_user.username, PASSWORD)
    page.set_viewport_size({"width": 1366, "height": 700})
    page.goto(f"{live_server.url}/settings/integrations/")
    row = page.get_by_role("row", name=re.compile("Integration 29"))
    row.get_by_role("button", name="Test").focus()
    page.keyboard.press("Enter")
    result = page.locator("#test-result")
    expect(result.get_by_text("The Test passed.")).to_be_in_viewport()
    assert page.evaluate("document.activeElement.id") == "test-result"
    # The panel sits in the row right below the one whose Test was pressed.
    below = page.evaluate("document.getElementById('test-panel-row').previousElementSibling.textContent")
    assert "Integration 29" in below


def test_a_test_on_the_detail_page_shows_its_steps_once(page, live_server, log_in, admin_user, simulator):
    integration = simulator_integration(simulator)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/")
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    page.reload()
    page.get_by_role("button", name="Test", exact=True).click()
    expect(page.get_by_text("The Test passed.")).to_be_visible()
    expect(page.locator(".step-name:visible", has_text="API call")).to_have_count(1)
