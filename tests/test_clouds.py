"""The cloud of an integration, set by its preset: the portal its alerts link to, GCC High and DoD told apart though
they share a host; the aea geo host; Graph's option for every Defender product, shown in Advanced options."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from defender import presets
from defender.services.alerts import portal_origin
from tests.conftest import PASSWORD
from tests.factories import make_integration
from tests.test_browser_integrations import open_add_form


@pytest.mark.parametrize(
    ("cloud", "portal"),
    [
        ("commercial", "https://security.microsoft.com"),
        ("gcc", "https://security.microsoft.com"),
        ("gcc-high", "https://security.microsoft.us"),
        ("dod", "https://security.apps.mil"),
    ],
)
@pytest.mark.django_db
def test_an_integrations_alerts_link_to_the_portal_of_its_cloud(cloud, portal):
    integration = make_integration(host="api-gov.securitycenter.microsoft.us", cloud=cloud)
    assert portal_origin(integration.to_settings()) == portal


def test_gcc_high_and_dod_presets_share_a_host_and_name_different_clouds():
    high, dod = presets.get_preset(presets.MDE, "gcc-high"), presets.get_preset(presets.MDE, "dod")
    assert high.host == dod.host
    assert (high.cloud, dod.cloud) == (presets.GCC_HIGH, presets.DOD)
    assert presets.get_preset(presets.GRAPH, "dod").cloud == presets.DOD
    assert presets.get_preset(presets.MDE, "eu").cloud == presets.COMMERCIAL


def test_the_uae_geo_host_is_a_preset_of_the_defender_api():
    preset = presets.get_preset(presets.MDE, "aea")
    assert (preset.host, preset.cloud) == ("aea.api.security.microsoft.com", presets.COMMERCIAL)


@pytest.mark.django_db
def test_graph_reads_only_defender_for_endpoints_alerts_unless_told_otherwise(admin_client):
    integration = make_integration()
    assert integration.to_settings().graph_all_products is False
    body = admin_client.get(reverse("defender:integration-edit", args=[integration.pk])).content.decode()
    assert "All Defender products (Graph)" in body
    assert "only Defender for Endpoint's, filtered at the server" in body


@pytest.mark.browser
def test_the_dod_preset_sets_the_cloud_that_gcc_high_shares_a_host_with(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)
    open_add_form(page)
    page.get_by_role("button", name="More").click()
    page.get_by_role("button", name="US DoD", exact=True).click()
    expect(page.get_by_label("Cloud")).to_have_value(presets.DOD)
    page.get_by_role("button", name="US GCC High", exact=True).click()
    expect(page.get_by_label("Cloud")).to_have_value(presets.GCC_HIGH)
    expect(page.get_by_label("Host")).to_have_value(presets.get_preset(presets.MDE, "dod").host)
    page.get_by_role("button", name="Less").click()
    page.get_by_role("button", name="EU", exact=True).click()
    expect(page.get_by_label("Cloud")).to_have_value(presets.COMMERCIAL)
