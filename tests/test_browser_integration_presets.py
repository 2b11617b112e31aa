"""The region presets of Add Integration by keyboard and mouse: the chosen one shows as chosen, a flavour switch keeps
the region, More reads Less once open, and a focused preset looks focused rather than disabled."""

import pytest
from playwright.sync_api import expect

from defender import presets
from tests.conftest import PASSWORD

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
