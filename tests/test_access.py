"""Every page needs a signed-in user, and viewers can change nothing.

The URL patterns are walked, not listed, so a page added later is covered without editing this file.
"""

import logging

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

# Pages that must stay reachable without signing in (the probes of load balancers: tests/test_health_endpoints.py).
PUBLIC = {"login", "logout", "healthz", "readyz"}
NON_HTML_PREFIXES = ("api/",)
POST_ONLY_SUFFIXES = ("-test", "-reissue", "-revoke", "-get-alerts", "-cancel")
SAMPLE_KWARGS = {"pk": 1, "object_id": "1", "app_label": "defender"}


def walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def concrete_url(route):
    """Turn a route like 'integrations/<int:pk>/edit/' or a regex into a URL with sample arguments."""
    import re

    url = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(SAMPLE_KWARGS.get(m.group(1), "1")), route)
    url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(SAMPLE_KWARGS.get(m.group(1), "1")), url)
    # A regex route nested in a path (the API's router) has its anchors in the middle of the joined route.
    return "/" + url.replace("^", "").replace("$", "").replace("\\", "")


def app_routes():
    return [(route, pattern) for route, pattern in walk(get_resolver().url_patterns) if pattern.name not in PUBLIC]


def required_permissions(pattern):
    view = getattr(pattern.callback, "view_class", pattern.callback)
    permissions = getattr(view, "permission_required", None) or getattr(pattern.callback, "permission_required", ())
    return (permissions,) if isinstance(permissions, str) else tuple(permissions)


@pytest.mark.django_db
def test_every_page_sends_an_anonymous_visitor_to_log_in(client):
    checked = 0
    for route, _pattern in app_routes():
        url = concrete_url(route)
        response = client.get(url)
        if route.startswith(NON_HTML_PREFIXES):
            assert response.status_code in (401, 403), url
        else:
            assert response.status_code == 302, f"{url} answered {response.status_code}"
            assert "login" in response["Location"], f"{url} redirected to {response['Location']}"
        checked += 1
    assert checked > 10


@pytest.mark.django_db
def test_every_defender_page_declares_a_permission():
    for route, pattern in app_routes():
        # The node API authenticates nodes by token, not users by permission (tests/test_remote_node_api.py).
        if route.startswith(NON_HTML_PREFIXES):
            continue
        if pattern.callback.__module__.startswith("defender") and pattern.name != "home":
            assert required_permissions(pattern), f"{route} has no permission_required"


@pytest.mark.django_db
def test_a_viewer_is_refused_every_change_page(viewer_client):
    change_routes = [
        (route, pattern)
        for route, pattern in app_routes()
        if any(not permission.split(".")[-1].startswith("view_") for permission in required_permissions(pattern))
    ]
    assert len(change_routes) >= 15
    for route, _pattern in change_routes:
        url = concrete_url(route)
        assert viewer_client.get(url).status_code == 403, url
        assert viewer_client.post(url).status_code == 403, url


@pytest.mark.django_db
def test_actions_that_change_or_call_out_refuse_get(admin_client):
    """A Test, a token, a revocation or a fetch runs only on POST, so a link or a prefetch never triggers one."""
    actions = [route for route, pattern in app_routes() if pattern.name and pattern.name.endswith(POST_ONLY_SUFFIXES)]
    assert len(actions) >= 6
    for route in actions:
        response = admin_client.get(concrete_url(route))
        # A Test of typed values answers GET by going back to its form (nothing runs): its address may be reloaded.
        form_test = route.endswith("/test/") and "/integrations/" in route and ("/edit/" in route or "/add/" in route)
        if form_test:  # (404: the sample integration does not exist)
            assert response.status_code in (302, 404), route
            assert response.status_code == 404 or not response["Location"].endswith("/test/"), route
        else:
            assert response.status_code == 405, route


@pytest.mark.django_db
def test_a_viewer_can_read_the_lists(viewer_client):
    for url in ["/settings/integrations/", "/settings/proxy-rules/", "/actors/"]:
        assert viewer_client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_a_viewer_cannot_use_the_django_admin(viewer_client):
    response = viewer_client.get("/admin/defender/integration/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_an_administrator_opens_every_page_without_a_server_error(admin_client):
    """Every GET an administrator can make renders (or refuses with 4xx): no page breaks on an existing object."""
    from defender.models import Integration, Job, RemoteNode
    from defender.remote import jobs
    from tests.factories import make_actor, make_integration, make_proxy_rule

    rule = make_proxy_rule()
    node = RemoteNode.objects.create(name="dmz-node")
    integration = make_integration(proxy_rule=rule, location=Integration.Location.REMOTE, remote_node=node)
    actor = make_actor()
    job = jobs.enqueue(integration, Job.Kind.TEST)
    objects = {
        "settings/integrations/jobs/": job.pk,
        "settings/integrations/": integration.pk,
        "settings/proxy-rules/": rule.pk,
        "settings/remote-nodes/": node.pk,
        "actors/": actor.pk,
    }
    checked = 0
    for route, _pattern in app_routes():
        if route.startswith(NON_HTML_PREFIXES) or route.startswith("admin/") or "<" not in route and "(" in route:
            continue
        pk = next((pk for prefix, pk in objects.items() if route.startswith(prefix)), 1)
        url = concrete_url(route).replace("/1/", f"/{pk}/")
        status = admin_client.get(url).status_code
        assert status < 500, f"{url} answered {status}"
        checked += 1
    assert checked > 20


@pytest.mark.django_db
def test_a_viewer_refused_a_page_sees_the_console_saying_they_are_read_only(viewer_client):
    response = viewer_client.get("/settings/integrations/add/defender_atp/")

    assert response.status_code == 403
    page = response.content.decode()
    assert "console.css" in page and 'aria-label="Main"' in page  # the site's own page, with its navigation
    assert "Your account is a <strong>Viewer</strong>: it is read-only." in page
    assert "never run a Test or Get alerts" in page


@pytest.mark.django_db
def test_an_administrator_without_a_permission_is_not_called_a_viewer(admin_client, admin_user):
    from django.contrib.auth.models import Group, Permission

    administrators = Group.objects.get(name="Administrators")
    administrators.permissions.remove(Permission.objects.get(codename="add_integration"))

    page = admin_client.get("/settings/integrations/add/defender_atp/").content.decode()

    assert "does not have the permission this page needs" in page
    assert "Viewer" not in page


@pytest.mark.django_db
def test_a_refusal_is_logged_once_without_a_traceback(viewer_client, caplog):
    with caplog.at_level(logging.INFO):
        viewer_client.get("/settings/integrations/add/defender_atp/")

    [record] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert (
        record.getMessage() == "Refused GET /settings/integrations/add/defender_atp/ to 'victor-viewer': no permission"
    )
    assert record.exc_info is None
    # In DEBUG Django's own loggers print to a console handler of their own as well as the site's: none is used.
    assert not any(record.name.startswith("django") for record in caplog.records)


@pytest.mark.django_db
def test_the_navigation_says_a_viewer_is_read_only(viewer_user, admin_user):
    from django.test import Client

    viewer, administrator = Client(), Client()
    viewer.force_login(viewer_user)
    administrator.force_login(admin_user)
    assert "Viewer · read-only" in viewer.get("/settings/integrations/").content.decode()
    assert "read-only" not in administrator.get("/settings/integrations/").content.decode()


@pytest.mark.django_db
def test_every_page_names_a_favicon_the_site_serves(admin_client, client):
    from django.contrib.staticfiles import finders

    assert finders.find("img/favicon.svg")
    for page in (admin_client.get("/actors/"), client.get("/accounts/login/"), client.get("/admin/login/")):
        assert '<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in page.content.decode()
