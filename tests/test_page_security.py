"""What every page promises the browser: only the site's own scripts and styles (and no inline ones), and nothing
kept in a cache."""

import json
import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from defender import alert_store
from defender.models import Integration, Job, RemoteNode
from defender.remote import jobs
from tests.factories import make_actor, make_integration, make_proxy_rule
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style[\s>]", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


@pytest.fixture
def every_kind_of_object():
    rule = make_proxy_rule()
    node = RemoteNode.objects.create(name="dmz-node")
    local = make_integration(proxy_rule=rule)
    remote = make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node)
    actor = make_actor()
    alert_store.store_alerts(actor, local, [defender_alert("da1"), defender_alert("da2", title="=cmd")])
    job = jobs.enqueue(remote, Job.Kind.TEST)
    return {"rule": rule, "node": node, "integration": local, "actor": actor, "job": job}


def main_pages(objects):
    integration, rule, node, actor = objects["integration"], objects["rule"], objects["node"], objects["actor"]
    return [
        "/settings/integrations/",
        "/settings/integrations/add/",
        "/settings/integrations/add/defender_atp/",
        f"/settings/integrations/{integration.pk}/",
        f"/settings/integrations/{integration.pk}/edit/",
        f"/settings/integrations/{integration.pk}/delete/",
        f"/settings/integrations/jobs/{objects['job'].pk}/",
        "/settings/proxy-rules/",
        "/settings/proxy-rules/add/",
        f"/settings/proxy-rules/{rule.pk}/",
        f"/settings/proxy-rules/{rule.pk}/edit/",
        f"/settings/proxy-rules/{rule.pk}/integrations/",
        "/settings/remote-nodes/",
        "/settings/remote-nodes/add/",
        f"/settings/remote-nodes/{node.pk}/",
        f"/settings/remote-nodes/{node.pk}/edit/",
        "/settings/system/",
        "/actors/",
        "/actors/add/",
        f"/actors/{actor.pk}/",
        f"/actors/{actor.pk}/edit/",
        f"/actors/{actor.pk}/alerts.csv",
    ]


def test_every_main_page_sends_a_policy_that_allows_only_the_sites_own_scripts_and_styles(
    admin_client, every_kind_of_object
):
    for url in [*main_pages(every_kind_of_object), "/accounts/login/"]:
        policy = admin_client.get(url)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", url
        assert directives["style-src"] == "'self'", url
        assert directives["default-src"] == "'self'", url
        assert directives["object-src"] == "'none'", url
        assert directives["frame-ancestors"] == "'none'", url


def test_no_page_has_an_inline_script_style_or_event_handler(admin_client, every_kind_of_object, client):
    token_page = admin_client.post(f"/settings/remote-nodes/{every_kind_of_object['node'].pk}/token/")
    pages = {url: admin_client.get(url) for url in main_pages(every_kind_of_object) if not url.endswith(".csv")}
    pages["token page"] = token_page
    pages["login page"] = client.get("/accounts/login/")
    for url, response in pages.items():
        assert response.status_code == 200, url
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"{url}: {INLINE_SCRIPT.search(html).group(0)}"
        assert not STYLE_ATTRIBUTE.search(html), f"{url}: {STYLE_ATTRIBUTE.search(html).group(0)}"
        assert not STYLE_ELEMENT.search(html), url
        assert not EVENT_HANDLER.search(html), f"{url}: {EVENT_HANDLER.search(html).group(0)}"


def test_htmx_is_told_not_to_inject_its_indicator_styles_and_the_site_stylesheet_has_them(admin_client):
    html = admin_client.get("/settings/integrations/").content.decode()
    config = html.split('<meta name="htmx-config" content=\'', 1)[1].split("'>", 1)[0]
    assert json.loads(config) == {"includeIndicatorStyles": False, "attributesToSettle": ["class", "width", "height"]}
    # The meta tag must come before htmx reads its configuration, when its script loads.
    assert html.index('name="htmx-config"') < html.index("htmx.min.js")
    stylesheet = Path(finders.find("css/console.css")).read_text()
    assert ".htmx-request .htmx-indicator" in stylesheet


def test_pages_with_data_and_the_csv_export_are_never_stored_by_a_cache(admin_client, every_kind_of_object):
    for url in main_pages(every_kind_of_object):
        assert admin_client.get(url)["Cache-Control"] == "no-store", url
    assert admin_client.post(f"/settings/remote-nodes/{every_kind_of_object['node'].pk}/token/")["Cache-Control"] == (
        "no-store"
    )
