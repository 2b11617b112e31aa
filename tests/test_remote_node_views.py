import re
from datetime import timedelta

import pytest
from django.utils import timezone

from defender.models import Integration, RemoteNode
from defender.remote import tokens
from tests.factories import make_integration

pytestmark = pytest.mark.django_db


def shown_token(response):
    return re.search(r'id="node-token"[^>]*value="([^"]+)"', response.content.decode()).group(1)


def test_adding_a_node_shows_its_token_once_with_the_command_and_stores_only_a_hash(admin_client):
    response = admin_client.post("/settings/remote-nodes/add/", {"name": "dmz-node", "poll_interval_seconds": 30})
    assert response.status_code == 200
    token = shown_token(response)
    body = response.content.decode()
    assert "python manage.py run_remote_node --site https://testserver --token-file node-token.txt" in body
    node = RemoteNode.objects.get(name="dmz-node")
    assert node.token_hash == tokens.token_hash(token)
    detail = admin_client.get(f"/settings/remote-nodes/{node.pk}/").content.decode()
    assert token not in detail and node.token_hint in detail


def test_form_errors_sit_next_to_their_fields_and_keep_the_input(admin_client):
    RemoteNode.objects.create(name="dmz-node")
    response = admin_client.post(
        "/settings/remote-nodes/add/", {"name": "dmz-node", "description": "kept", "poll_interval_seconds": 1}
    )
    body = response.content.decode()
    assert "Remote node with this Name already exists." in body
    assert "Enter a poll interval between 5 and 600 seconds." in body
    assert re.search(r"<textarea[^>]*>\s*kept</textarea>", body)


def test_reissuing_replaces_the_token(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    old = tokens.issue(node)
    new = shown_token(admin_client.post(f"/settings/remote-nodes/{node.pk}/token/"))
    assert new != old and tokens.node_for(old) is None and tokens.node_for(new) == node


def test_revoking_leaves_the_node_without_a_valid_token(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    token = tokens.issue(node)
    admin_client.post(f"/settings/remote-nodes/{node.pk}/revoke/")
    assert tokens.node_for(token) is None
    assert "Token revoked" in admin_client.get("/settings/remote-nodes/").content.decode()


def test_the_list_shows_online_offline_with_last_seen_and_assigned_integrations(admin_client):
    online = RemoteNode.objects.create(name="online-node", poll_interval_seconds=30, agent_version="1.0")
    offline = RemoteNode.objects.create(name="offline-node", poll_interval_seconds=30)
    for node in (online, offline):
        tokens.issue(node)
    RemoteNode.objects.filter(pk=online.pk).update(last_seen_at=timezone.now() - timedelta(seconds=20))
    RemoteNode.objects.filter(pk=offline.pk).update(last_seen_at=timezone.now() - timedelta(minutes=5))
    make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=online)
    body = admin_client.get("/settings/remote-nodes/").content.decode()
    assert "Online" in body and "Offline" in body and "last seen 5\xa0minutes ago" in body
    assert "Defender DMZ" in body and "1.0" in body


def test_the_list_does_not_query_per_node(admin_client, django_assert_max_num_queries):
    for index in range(30):
        node = RemoteNode.objects.create(name=f"node-{index}")
        make_integration(name=f"Defender {index}", location=Integration.Location.REMOTE, remote_node=node)
    with django_assert_max_num_queries(8):
        assert admin_client.get("/settings/remote-nodes/").status_code == 200


def test_deleting_a_node_that_runs_integrations_is_refused_with_their_names(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node)
    url = f"/settings/remote-nodes/{node.pk}/delete/"
    page = admin_client.get(url).content.decode()
    assert "cannot be deleted" in page and "Defender DMZ" in page
    assert '<button class="btn btn-danger" type="submit">' not in page
    response = admin_client.post(url)
    assert response.status_code == 409
    assert RemoteNode.objects.filter(pk=node.pk).exists()
    assert "move them first" in response.content.decode() and "Defender DMZ" in response.content.decode()


def test_a_viewer_sees_nodes_but_no_token_actions(viewer_client):
    node = RemoteNode.objects.create(name="dmz-node")
    body = viewer_client.get(f"/settings/remote-nodes/{node.pk}/").content.decode()
    assert "Issue new token" not in body and "Revoke token" not in body
    assert viewer_client.post(f"/settings/remote-nodes/{node.pk}/token/").status_code == 403


def test_the_token_page_is_never_cached(admin_client):
    response = admin_client.post("/settings/remote-nodes/add/", {"name": "dmz-node", "poll_interval_seconds": 30})
    assert response["Cache-Control"] == "no-store"


def shown_command(response):
    return re.search(r'<code id="node-command"[^>]*>([^<]+)</code>', response.content.decode()).group(1)


@pytest.mark.parametrize(
    ("site_url", "command_site"),
    [
        ("", "https://testserver"),  # production behind a TLS-ending proxy that did not say so: still https
        ("http://director.example.com", "https://director.example.com"),
        ("https://director.example.com", "https://director.example.com"),
    ],
)
def test_in_production_the_token_page_shows_only_an_https_command(admin_client, settings, site_url, command_site):
    settings.DEBUG, settings.SITE_URL = False, site_url
    response = admin_client.post("/settings/remote-nodes/add/", {"name": "dmz-node", "poll_interval_seconds": 30})
    command = shown_command(response)
    assert command == f"python manage.py run_remote_node --site {command_site} --token-file node-token.txt"


def test_a_development_site_on_plain_http_shows_the_command_with_allow_insecure_http(admin_client, settings):
    settings.DEBUG, settings.SITE_URL = True, ""
    response = admin_client.post("/settings/remote-nodes/add/", {"name": "dmz-node", "poll_interval_seconds": 30})
    assert shown_command(response) == (
        "python manage.py run_remote_node --site http://testserver --token-file node-token.txt --allow-insecure-http"
    )


def test_a_development_site_on_https_shows_the_command_without_the_insecure_flag(admin_client, settings):
    settings.DEBUG, settings.SITE_URL = True, "https://director.example.com"
    node = RemoteNode.objects.create(name="dmz-node")
    command = shown_command(admin_client.post(f"/settings/remote-nodes/{node.pk}/token/"))
    assert command == "python manage.py run_remote_node --site https://director.example.com --token-file node-token.txt"


def test_revoking_a_token_asks_first_saying_what_stops_working(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    tokens.issue(node)
    make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node)
    detail = admin_client.get(f"/settings/remote-nodes/{node.pk}/").content.decode()
    assert f'href="/settings/remote-nodes/{node.pk}/revoke/confirm/"' in detail
    confirm = admin_client.get(f"/settings/remote-nodes/{node.pk}/revoke/confirm/").content.decode()
    assert "can no longer check in" in confirm and "Defender DMZ" in confirm
    node.refresh_from_db()
    assert node.token_hash  # asking is not revoking
    admin_client.post(f"/settings/remote-nodes/{node.pk}/revoke/")
    node.refresh_from_db()
    assert node.token_hash is None


def test_a_node_that_never_checked_in_says_how_to_start_its_agent(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    tokens.issue(node)
    html = admin_client.get(f"/settings/remote-nodes/{node.pk}/").content.decode()
    assert "Never checked in: start its agent" in html
    assert "python manage.py run_remote_node --site https://testserver --token-file node-token.txt" in html


def test_recent_jobs_show_the_jobs_still_waiting_for_the_node(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    integration = make_integration(name="Defender DMZ", location=Integration.Location.REMOTE, remote_node=node)
    admin_client.post(f"/settings/integrations/{integration.pk}/test/")
    html = admin_client.get(f"/settings/remote-nodes/{node.pk}/").content.decode()
    assert "No jobs yet." not in html
    assert "Queued" in html and "Defender DMZ" in html.split("Recent jobs", 1)[1]
