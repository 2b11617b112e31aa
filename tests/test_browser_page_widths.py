"""Every page of the console on a laptop (1366 px) and a phone (390 px): the page itself never scrolls sideways (a
wide table scrolls inside its own box), and each page's main actions stay on screen."""

import pytest

from defender import alert_store
from defender.models import Integration, Job, RemoteNode
from defender.remote import tokens
from tests.factories import make_actor, make_integration, make_proxy_rule
from tests.test_alert_store import defender_alert
from tests.test_browser_actors import inside_viewport, log_in_at, page_scrolls_sideways

pytestmark = pytest.mark.browser

LONG = "a-very-long-host-name-for-a-lab-defender-endpoint.eu.api.security.microsoft.example"


@pytest.fixture
def console(db):
    """A console with one of everything, with long names where people type long names."""
    rule = make_proxy_rule(name="Corporate proxy in the Frankfurt data centre", host=f"proxy.{LONG}")
    node = RemoteNode.objects.create(name="dmz-node-in-the-isolated-lab-network", description="Behind the DMZ.")
    tokens.issue(node)
    local = make_integration(name="Defender EU with a long descriptive name", host=LONG, proxy_rule=rule)
    remote = make_integration(name="Defender behind the DMZ", location=Integration.Location.REMOTE, remote_node=node)
    Job.objects.create(integration=remote, kind=Job.Kind.TEST, deadline="2099-01-01T00:00:00Z", node=node)
    actor = make_actor(name="Finance workstation on the third floor", hostname="ws-fin-07.corp.contoso.example")
    alert_store.store_alerts(actor, local, [defender_alert("da1"), defender_alert("da2", severity="High")])
    return {
        "/settings/integrations/": "Add Integration",
        "/settings/integrations/add/defender_atp/": "Submit",
        f"/settings/integrations/{local.pk}/": "Edit",
        f"/settings/integrations/{local.pk}/edit/": "Submit",
        "/settings/proxy-rules/": "Add proxy rule",
        f"/settings/proxy-rules/{rule.pk}/": "Edit",
        f"/settings/proxy-rules/{rule.pk}/integrations/": "Save assignment",
        "/settings/remote-nodes/": "Add remote node",
        f"/settings/remote-nodes/{node.pk}/": "Issue new token",
        f"/settings/remote-nodes/{node.pk}/token/confirm/": "Issue new token",
        "/actors/": "Add Actor",
        f"/actors/{actor.pk}/": "Get alerts",
    }


@pytest.mark.parametrize("width", [390, 1366])
def test_no_page_scrolls_sideways_and_its_main_action_stays_on_screen(browser, live_server, admin_user, console, width):
    context, page = log_in_at(browser, live_server, admin_user, width)
    try:
        for path, action in console.items():
            assert page.goto(f"{live_server.url}{path}").status == 200, path
            assert not page_scrolls_sideways(page), f"{path} scrolls sideways at {width} px"
            target = page.get_by_role("link", name=action).or_(page.get_by_role("button", name=action)).first
            target.scroll_into_view_if_needed()
            assert inside_viewport(page, target), f"{action!r} on {path} is off screen at {width} px"
    finally:
        context.close()


def test_on_a_phone_each_listed_integrations_row_actions_are_on_screen(browser, live_server, admin_user, console):
    context, page = log_in_at(browser, live_server, admin_user, 390)
    try:
        page.goto(f"{live_server.url}/settings/integrations/")
        for row in page.locator("tbody tr").all():
            assert inside_viewport(page, row.get_by_role("link", name="Edit"))
    finally:
        context.close()
