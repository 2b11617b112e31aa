"""Submitting an integration's Edit page with nothing changed keeps its saved secret working, for every kind of
integration the demo and the forms create. The page is posted back as a browser posts it: the CA certificate's
textarea with CRLF line endings, the secret field blank."""

import html
import json

import pytest
from django.urls import reverse

from defender import presets
from defender.demo import seed_demo
from defender.models import Integration, Job, RemoteNode
from defender.remote import jobs, tokens
from tests.browser_form import form_data
from tests.factories import make_proxy_rule, simulator_integration
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER

pytestmark = pytest.mark.django_db


def mde(simulator, auth_proxy):
    return simulator_integration(simulator)


def graph(simulator, auth_proxy):
    fields = {"api_flavour": presets.GRAPH, "resource": "https://graph.microsoft.com"}
    return simulator_integration(simulator, **fields, api_version=presets.DEFAULT_API_VERSION[presets.GRAPH])


def siem(simulator, auth_proxy):
    fields = {"api_flavour": presets.SIEM, "resource": "https://graph.windows.net"}
    return simulator_integration(simulator, **fields, api_version=presets.DEFAULT_API_VERSION[presets.SIEM])


def ca_typed_with_crlf(simulator, auth_proxy):
    return simulator_integration(simulator, ca_certificate=simulator.ca_pem.replace("\n", "\r\n"))


def through_a_proxy(simulator, auth_proxy):
    rule = make_proxy_rule(host=auth_proxy.host, port=auth_proxy.port, username=AUTH_USER, password=AUTH_PASSWORD)
    return simulator_integration(simulator, proxy_rule=rule)


NODE_TOKENS = {}


def remote(simulator, auth_proxy):
    node = RemoteNode.objects.create(name="dmz-node")
    NODE_TOKENS[node.pk] = tokens.issue(node)
    return simulator_integration(simulator, location=Integration.Location.REMOTE, remote_node=node)


def demo(simulator, auth_proxy):
    return seed_demo(simulator)


KINDS = {
    "mde": mde,
    "graph": graph,
    "siem": siem,
    "ca typed with crlf": ca_typed_with_crlf,
    "through a proxy": through_a_proxy,
    "remote": remote,
    "demo": demo,
}


@pytest.mark.parametrize("kind", KINDS)
def test_submitting_the_edit_page_unchanged_keeps_the_saved_secret_working(
    admin_client, client, simulator, auth_proxy, kind
):
    integration = KINDS[kind](simulator, auth_proxy)
    edit = reverse("defender:integration-edit", args=[integration.pk])
    data = form_data(admin_client.get(edit).content.decode(), "integration-form")
    assert data["client_secret"] == [""]
    if integration.ca_certificate:
        assert "\r\n" in data["ca_certificate"][0]  # as a browser posts a textarea

    if integration.location == Integration.Location.LOCAL:
        # Test on the form, the secret left blank: the saved one goes where it was typed for.
        test_url = reverse("defender:integration-edit-test", args=[integration.pk])
        tested = html.unescape(admin_client.post(test_url, data).content.decode())
        assert "The Test passed." in tested, tested[-3000:]
    response = admin_client.post(edit, data)
    assert response.status_code == 302, html.unescape(response.content.decode())[-3000:]

    saved = Integration.objects.get(pk=integration.pk)
    assert saved.client_secret_destination == integration.client_secret_destination
    if saved.location == Integration.Location.LOCAL:
        response = admin_client.post(reverse("defender:integration-test", args=[saved.pk]), follow=True)
        page = html.unescape(response.content.decode())
        assert "The Test passed." in page, page[-3000:]
    else:
        jobs.enqueue(saved, Job.Kind.TEST)
        answer = client.post(
            "/api/nodes/check-in/",
            json.dumps({"wait": 0}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {NODE_TOKENS[saved.remote_node_id]}",
        )
        assert answer.json()["job"]["settings"]["client_secret"] == simulator.app.client_secret
