"""The destination rule: a saved secret goes only where it was typed for, whatever path changed the record.

Each test points a record somewhere the secret must not go: a capture relay or a proxy of the test's own, which
relays to the simulator and so would receive the client secret, the bearer token or the proxy password if it were
let through. The tests of a raw ``QuerySet.update()`` then type the secret again and show that the same capture
receives it: it would have seen it, had the rule not held.
"""

import html
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from defender import presets
from defender.models import Actor, Integration, Job, ProxyRule, RemoteNode
from defender.remote import jobs, tokens
from defender.services import proxy_check
from tests.factories import make_proxy_rule, simulator_integration
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER, ConnectProxy

pytestmark = pytest.mark.django_db

CHECK_IN = "/api/nodes/check-in/"
SIEM_RESOURCE = "https://graph.windows.net"
MDE_RESOURCE = "https://api.securitycenter.microsoft.com"


@pytest.fixture
def second_auth_proxy():
    server = ConnectProxy(AUTH_USER, AUTH_PASSWORD).start()
    yield server
    server.stop()


@dataclass
class Lab:
    """The test's own servers: where the secret was typed for, and the places it must not reach."""

    simulator: object
    capture: object
    second_capture: object
    proxy: object
    auth_proxy: object
    second_auth_proxy: object

    @property
    def secret(self):
        return self.simulator.app.client_secret

    def typed_for(self, **fields):
        """An integration whose client secret was typed for the capture relay (its Auth URL and its API)."""
        values = {
            "host": self.capture.host,
            "port": self.capture.port,
            "auth_url": self.capture.url,
            "ca_certificate": self.capture.ca_pem,
        }
        values.update(fields)
        return simulator_integration(self.simulator, **values)

    def rule_on(self, server, **fields):
        """A proxy rule for one of the test's proxies, with its credentials when it wants them."""
        values = {"name": f"Proxy {server.port}", "host": server.host, "port": server.port}
        if server.username:
            values.update(username=server.username, password=server.password)
        values.update(fields)
        return make_proxy_rule(**values)


@pytest.fixture
def lab(simulator, capture, second_capture, proxy, auth_proxy, second_auth_proxy):
    return Lab(simulator, capture, second_capture, proxy, auth_proxy, second_auth_proxy)


def run_the_test(client, integration):
    """The Test of a saved integration, as its Test button runs it without JavaScript; the page's text."""
    response = client.post(reverse("defender:integration-test", args=[integration.pk]), follow=True)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def assert_refused(page, *changed):
    """The Test failed at its first step, saying the secret is not sent, what changed, and what to do."""
    assert "Stored secret" in page and "is not sent" in page, page[-3000:]
    assert "Type it again" in page
    for part in changed:
        assert part in page, part
    assert "DNS lookup" not in page  # nothing after the first step: not even a name was looked up


def retype_client_secret(integration, secret):
    """What typing the secret again does: set on the record and saved (the Edit page does the same)."""
    fresh = Integration.objects.get(pk=integration.pk)
    fresh.client_secret = secret
    fresh.save()


def retype_proxy_password(rule):
    fresh = ProxyRule.objects.get(pk=rule.pk)
    fresh.password = AUTH_PASSWORD
    fresh.save()


def check_in(client, token):
    return client.post(
        CHECK_IN, json.dumps({"wait": 0}), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def saw_client_secret(lab):
    return lambda capture: capture.saw(lab.secret)


def saw_bearer_token(capture):
    return capture.saw_bearer_token


def saw_bearer_token_in_clear(capture):
    return b"authorization: bearer " in capture.received_in_clear.lower()


def connected(server):
    return server.connections > 0


def forget(server):
    """Start watching afresh: what reached the server while the test set things up does not count."""
    if hasattr(server, "forget"):
        server.forget()
    else:
        server.connections = 0
        server.credentials_seen.clear()


# --- a raw QuerySet.update() of each destination field of an integration ---------------------------------------------


@dataclass
class Move:
    """An integration whose secret was typed for one place, the update that points it elsewhere, where to watch,
    what the refusal names, and what would show that the watched place received something secret."""

    integration: Integration
    update: dict
    watched: tuple
    named: str
    arrived: Callable
    model: type = Integration
    pk: int | None = None
    rule: ProxyRule | None = None
    # How the retyped secret is shown to reach the watched place (the Test, unless it stops short of sending).
    send: Callable | None = None


def move_auth_url(lab):
    return Move(
        lab.typed_for(), {"auth_url": lab.second_capture.url}, (lab.second_capture,), "Auth URL", saw_client_secret(lab)
    )


def move_tenant_id(lab):
    # The simulator's tenant by its domain: a change of the field all the same, which is all the rule can judge.
    return Move(
        lab.typed_for(), {"tenant_id": lab.simulator.tenant_domain}, (lab.capture,), "Tenant ID", saw_client_secret(lab)
    )


def move_resource(lab):
    siem = lab.typed_for(
        api_flavour=presets.SIEM, resource=SIEM_RESOURCE, api_version=presets.DEFAULT_API_VERSION[presets.SIEM]
    )
    return Move(siem, {"resource": MDE_RESOURCE}, (lab.capture,), "Resource", saw_client_secret(lab))


def move_api_flavour(lab):
    return Move(lab.typed_for(), {"api_flavour": presets.GRAPH}, (lab.capture,), "API flavour", saw_client_secret(lab))


def move_host(lab):
    return Move(lab.typed_for(), {"host": "localhost"}, (lab.capture,), "Host", saw_bearer_token)


def move_port(lab):
    return Move(lab.typed_for(), {"port": lab.second_capture.port}, (lab.second_capture,), "Port", saw_bearer_token)


def get_alerts_with(client, integration):
    """Get alerts for an actor from this integration alone, as its page's button does."""
    actor = Actor.objects.get_or_create(name="Finance workstation", defaults={"hostname": "ws-fin-07"})[0]
    client.post(
        reverse("defender:actor-get-alerts", args=[actor.pk]), {"integrations": [integration.pk], "window": "24h"}
    )


def move_protocol(lab):
    # The Test stops at its TLS step when plain HTTP meets a port that speaks HTTPS, so Get alerts shows the token
    # would travel in clear.
    return Move(
        lab.typed_for(),
        {"protocol": "http"},
        (lab.capture,),
        "Protocol",
        saw_bearer_token_in_clear,
        send=get_alerts_with,
    )


def move_proxy_rule(lab):
    rule = lab.rule_on(lab.proxy)
    return Move(
        lab.typed_for(), {"proxy_rule": rule}, (lab.proxy, lab.capture), "Proxy", lambda _: connected(lab.proxy)
    )


def move_verify_tls(lab):
    # Typed for the capture only if it proves itself with a certificate of the simulator's CA: it cannot.
    untrusting = lab.typed_for(ca_certificate=lab.simulator.ca_pem)
    return Move(untrusting, {"verify_tls": False}, (lab.capture,), "Verify TLS", saw_client_secret(lab))


def move_ca_certificate(lab):
    untrusting = lab.typed_for(ca_certificate=lab.simulator.ca_pem)
    return Move(
        untrusting, {"ca_certificate": lab.capture.ca_pem}, (lab.capture,), "CA certificate", saw_client_secret(lab)
    )


INTEGRATION_MOVES = {
    "auth_url": move_auth_url,
    "tenant_id": move_tenant_id,
    "resource": move_resource,
    "api_flavour": move_api_flavour,
    "host": move_host,
    "port": move_port,
    "protocol": move_protocol,
    "proxy_rule": move_proxy_rule,
    "verify_tls": move_verify_tls,
    "ca_certificate": move_ca_certificate,
}


# --- ... and of each destination field of the proxy rule it uses ----------------------------------------------------


def through(lab, server, **rule_fields):
    rule = lab.rule_on(server, **rule_fields)
    return rule, lab.typed_for(proxy_rule=rule)


def move_proxy_host(lab):
    rule, integration = through(lab, lab.auth_proxy)
    arrived = lambda _: connected(lab.auth_proxy)  # noqa: E731
    return Move(
        integration, {"host": "localhost"}, (lab.auth_proxy,), "the proxy's host", arrived, ProxyRule, rule.pk, rule
    )


def move_proxy_port(lab):
    rule, integration = through(lab, lab.auth_proxy)
    update = {"port": lab.second_auth_proxy.port}
    arrived = lambda _: connected(lab.second_auth_proxy)  # noqa: E731
    return Move(integration, update, (lab.second_auth_proxy,), "the proxy's port", arrived, ProxyRule, rule.pk, rule)


def move_proxy_type(lab):
    rule, integration = through(lab, lab.auth_proxy)
    arrived = lambda _: connected(lab.auth_proxy)  # noqa: E731
    update = {"proxy_type": "socks5"}  # the test proxy speaks SOCKS5 on the same port
    return Move(integration, update, (lab.auth_proxy,), "the proxy's type", arrived, ProxyRule, rule.pk, rule)


def move_proxy_username(lab):
    rule, integration = through(lab, lab.auth_proxy)
    arrived = lambda _: connected(lab.auth_proxy)  # noqa: E731
    return Move(
        integration, {"username": ""}, (lab.auth_proxy,), "the proxy's username", arrived, ProxyRule, rule.pk, rule
    )


def move_proxy_ca_certificate(lab):
    # Through an open proxy to the capture, whose certificate the integration does not trust: a CA on the rule would
    # let the tunnelled TLS to the capture succeed (as a TLS-intercepting proxy's own certificates would).
    rule = lab.rule_on(lab.proxy)
    integration = lab.typed_for(proxy_rule=rule, ca_certificate=lab.simulator.ca_pem)
    update = {"ca_certificate": lab.capture.ca_pem}
    watched = (lab.proxy, lab.capture)
    return Move(integration, update, watched, "the proxy's CA certificate", saw_client_secret(lab), ProxyRule, rule.pk)


def move_proxy_bypass_hosts(lab):
    rule, integration = through(lab, lab.proxy, bypass_hosts="127.0.0.1")
    arrived = lambda _: connected(lab.proxy)  # noqa: E731
    update = {"bypass_hosts": ""}  # what went direct now goes through the proxy
    return Move(integration, update, (lab.proxy,), "the proxy's bypass hosts", arrived, ProxyRule, rule.pk)


PROXY_RULE_MOVES = {
    "proxy_type": move_proxy_type,
    "host": move_proxy_host,
    "port": move_proxy_port,
    "username": move_proxy_username,
    "ca_certificate": move_proxy_ca_certificate,
    "bypass_hosts": move_proxy_bypass_hosts,
}


def prove_nothing_reaches_the_new_destination(client, lab, move):
    move.model.objects.filter(pk=move.pk or move.integration.pk).update(**move.update)
    for watched in move.watched:
        forget(watched)

    assert_refused(run_the_test(client, move.integration), move.named)
    for watched in move.watched:
        assert watched.connections == 0, f"{watched} was reached"
        if hasattr(watched, "saw"):
            assert not watched.saw(lab.secret) and not watched.saw_bearer_token

    # Typed again, the secret goes there: the capture would have seen it, had the rule not held.
    retype_client_secret(move.integration, lab.secret)
    if move.rule is not None and move.rule.username and move.update.get("username", move.rule.username):
        retype_proxy_password(move.rule)
    (move.send or run_the_test)(client, move.integration)
    assert move.arrived(move.watched[-1]), "the capture never saw the secret: this test could not fail"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # Verify TLS off, typed again
@pytest.mark.parametrize("field", INTEGRATION_MOVES)
def test_a_raw_update_of_an_integrations_destination_sends_nothing_to_the_new_one(admin_client, lab, field):
    prove_nothing_reaches_the_new_destination(admin_client, lab, INTEGRATION_MOVES[field](lab))


@pytest.mark.parametrize("field", PROXY_RULE_MOVES)
def test_a_raw_update_of_its_proxy_rule_sends_nothing_to_the_new_destination(admin_client, lab, field):
    prove_nothing_reaches_the_new_destination(admin_client, lab, PROXY_RULE_MOVES[field](lab))


# --- ... of the proxy rule's own password -----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["proxy_type", "host", "port", "ca_certificate"])
def test_a_raw_update_of_a_proxy_rule_keeps_its_password_from_the_new_proxy(admin_client, lab, monkeypatch, field):
    monkeypatch.setattr(proxy_check, "PROBE_TARGET", (lab.capture.host, lab.capture.port))
    rule = lab.rule_on(lab.auth_proxy)
    watched = lab.second_auth_proxy if field == "port" else lab.auth_proxy
    update = {
        "proxy_type": "socks5",
        "host": "localhost",
        "port": lab.second_auth_proxy.port,
        "ca_certificate": lab.capture.ca_pem,
    }[field]
    ProxyRule.objects.filter(pk=rule.pk).update(**{field: update})
    forget(watched)

    response = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True)
    page = html.unescape(response.content.decode())
    assert "Stored secret" in page and f"The password of proxy rule {rule.name} is not sent" in page
    assert watched.connections == 0 and watched.credentials_seen == []

    retype_proxy_password(rule)
    admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]))
    assert f"{AUTH_USER}:{AUTH_PASSWORD}" in watched.credentials_seen, "the proxy never saw it: this could not fail"


# --- ... of where a Remote integration runs ---------------------------------------------------------------------------


def node_with_token(name):
    node = RemoteNode.objects.create(name=name)
    return node, tokens.issue(node)


@pytest.mark.parametrize("field", ["location", "remote_node", "token"])
def test_a_raw_update_of_where_a_remote_integration_runs_hands_its_secret_to_no_node(client, lab, field):
    node, token = node_with_token("dmz-node")
    location = Integration.Location.LOCAL if field == "location" else Integration.Location.REMOTE
    integration = lab.typed_for(location=location, remote_node=node)
    if field == "location":
        Integration.objects.filter(pk=integration.pk).update(location=Integration.Location.REMOTE)
        named = "Location"
    elif field == "remote_node":
        other, token = node_with_token("other-node")
        Integration.objects.filter(pk=integration.pk).update(remote_node=other)
        named = "Remote node"
    else:
        # Whoever can write the node's row sets the hash of a token they hold.
        token = tokens.PREFIX + "chosen-by-whoever-writes-the-row"
        RemoteNode.objects.filter(pk=node.pk).update(token_hash=tokens.token_hash(token))
        named = "the remote node's token"
    job = jobs.enqueue(integration, Job.Kind.TEST)

    response = check_in(client, token)
    assert response.status_code == 200 and response.json()["job"] is None
    assert lab.secret not in response.content.decode()  # everything the node received
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "is not sent" in job.error and named in job.error

    retype_client_secret(integration, lab.secret)
    jobs.enqueue(integration, Job.Kind.TEST)
    assert check_in(client, token).json()["job"]["settings"]["client_secret"] == lab.secret


# --- writing the record of the destination itself ---------------------------------------------------------------------


def test_rewriting_the_recorded_destination_does_not_let_the_secret_go_there(admin_client, lab):
    integration = lab.typed_for()
    forged = dict(integration.client_secret_destination)
    forged["destination"] = {**forged["destination"], "port": lab.second_capture.port}
    Integration.objects.filter(pk=integration.pk).update(port=lab.second_capture.port, client_secret_destination=forged)
    assert_refused(run_the_test(admin_client, integration), "the record was changed outside the console")
    assert lab.second_capture.connections == 0


def test_a_secret_copied_into_another_integration_is_not_sent_to_its_destination(admin_client, lab):
    """Someone who may edit one integration, and can write plain columns, copies another's client secret into it."""
    mine = lab.typed_for(name="Mine")
    theirs = lab.typed_for(
        name="Theirs",
        client_secret="another-test-only-secret",
        auth_url=lab.second_capture.url,
        port=lab.second_capture.port,
    )
    ciphertext = Integration.objects.filter(pk=mine.pk).values_list("client_secret", flat=True)[0]
    Integration.objects.filter(pk=theirs.pk).update(client_secret=ciphertext)
    assert_refused(run_the_test(admin_client, theirs), "the record was changed outside the console")
    assert lab.second_capture.connections == 0


# --- the paths through the pages ---------------------------------------------------------------------------------


def test_the_assignment_page_puts_no_integration_behind_a_proxy_without_its_secret_typed_again(admin_client, lab):
    integration = lab.typed_for(name="Defender direct")
    rule = lab.rule_on(lab.proxy, name="Someone's proxy")
    assign = reverse("defender:proxyrule-assign", args=[rule.pk])

    first = html.unescape(admin_client.post(assign, {"integrations": [integration.pk]}).content.decode())
    assert "Saving changes where the client secret of Defender direct goes" in first
    assert Integration.objects.get(pk=integration.pk).proxy_rule is None  # said before saving, nothing saved

    admin_client.post(assign, {"integrations": [integration.pk], "confirm_retyping": "yes"})
    assert Integration.objects.get(pk=integration.pk).proxy_rule == rule
    assert_refused(run_the_test(admin_client, integration), "Proxy")
    assert lab.proxy.connections == 0 and lab.capture.connections == 0


def rule_form(rule, **overrides):
    data = {
        "name": rule.name,
        "proxy_type": rule.proxy_type,
        "host": rule.host,
        "port": str(rule.port),
        "username": rule.username,
        "password": "",
        "ca_certificate": rule.ca_certificate,
        "bypass_hosts": rule.bypass_hosts,
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("change", ["port", "ca_certificate", "clearing the username"])
def test_editing_a_proxy_rule_keeps_the_secrets_of_its_integrations_from_the_new_destination(admin_client, lab, change):
    if change == "ca_certificate":
        rule = lab.rule_on(lab.proxy, name="Corporate proxy")
        integration = lab.typed_for(name="Defender EU", proxy_rule=rule, ca_certificate=lab.simulator.ca_pem)
        edit, watched, named = (
            {"ca_certificate": lab.capture.ca_pem},
            (lab.proxy, lab.capture),
            "the proxy's CA certificate",
        )
    elif change == "port":
        rule = lab.rule_on(lab.auth_proxy, name="Corporate proxy")
        integration = lab.typed_for(name="Defender EU", proxy_rule=rule)
        edit, watched, named = {"port": str(lab.second_auth_proxy.port)}, (lab.second_auth_proxy,), "the proxy's port"
    else:
        rule = lab.rule_on(lab.auth_proxy, name="Corporate proxy")
        integration = lab.typed_for(name="Defender EU", proxy_rule=rule)
        edit, watched, named = {"username": ""}, (lab.auth_proxy,), "the proxy's username"
    url = reverse("defender:proxyrule-edit", args=[rule.pk])
    assert "Used by Defender EU." in admin_client.get(url).content.decode()

    saved = ProxyRule.objects.values().get(pk=rule.pk)
    first = html.unescape(admin_client.post(url, rule_form(rule, **edit)).content.decode())
    assert "Saving changes where the client secret of Defender EU goes" in first  # before saving
    if change == "port":
        assert "Type the password again: where it is sent changed (Port)" in first
    assert ProxyRule.objects.values().get(pk=rule.pk) == saved  # nothing saved yet

    password = {"password": AUTH_PASSWORD} if change == "port" else {}
    response = admin_client.post(url, {**rule_form(rule, **edit), **password, "confirm_retyping": "yes"})
    assert response.status_code == 302
    assert_refused(run_the_test(admin_client, integration), named)
    for server in watched:
        assert server.connections == 0


def test_a_new_node_token_is_not_handed_the_secrets_typed_for_the_old_one(admin_client, client, lab):
    node, _ = node_with_token("dmz-node")
    integration = lab.typed_for(name="Defender behind the DMZ", location=Integration.Location.REMOTE, remote_node=node)
    detail = admin_client.get(node.get_absolute_url()).content.decode()
    confirm = reverse("defender:remotenode-reissue-confirm", args=[node.pk])
    assert confirm in detail

    before = html.unescape(admin_client.get(confirm).content.decode())
    assert "their client secrets must then be typed again" in before and "Defender behind the DMZ" in before
    page = admin_client.post(reverse("defender:remotenode-reissue", args=[node.pk])).content.decode()
    new_token = page.split('id="node-token" class="form-control font-monospace" readonly value="')[1].split('"')[0]
    assert "Then type the client secret of each of these integrations again" in page

    job = jobs.enqueue(integration, Job.Kind.TEST)
    response = check_in(client, new_token)
    assert response.json()["job"] is None and lab.secret not in response.content.decode()
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "the remote node's token changed" in job.error


@pytest.fixture
def superuser_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x-for-test-only"))
    return client


@pytest.mark.parametrize("change", ["auth_url", "ca_certificate"])
def test_the_django_admin_asks_for_the_secret_when_a_change_would_move_it(superuser_client, lab, change):
    from tests.browser_form import form_data

    integration = lab.typed_for(ca_certificate=lab.simulator.ca_pem + lab.capture.ca_pem)
    url = f"/admin/defender/integration/{integration.pk}/change/"
    data = form_data(superuser_client.get(url).content.decode(), "integration_form")
    data[change] = [lab.second_capture.url] if change == "auth_url" else [lab.capture.ca_pem]
    response = superuser_client.post(url, data)
    body = html.unescape(response.content.decode())
    assert response.status_code == 200 and "Type the client secret again: where it is sent changed" in body
    assert Integration.objects.get(pk=integration.pk).client_secret_destination == integration.client_secret_destination
    saved = Integration.objects.get(pk=integration.pk)
    assert getattr(saved, change) == getattr(integration, change)  # nothing saved
    assert lab.second_capture.connections == 0


def test_the_django_admin_asks_for_the_proxy_password_when_the_proxy_moves(superuser_client, lab):
    from tests.browser_form import form_data

    rule = lab.rule_on(lab.auth_proxy)
    lab.typed_for(name="Defender EU", proxy_rule=rule)
    url = f"/admin/defender/proxyrule/{rule.pk}/change/"
    page = html.unescape(superuser_client.get(url).content.decode())
    assert "Used by Defender EU." in page
    data = form_data(page, "proxyrule_form")
    data["port"] = [str(lab.second_auth_proxy.port)]
    body = html.unescape(superuser_client.post(url, data).content.decode())
    assert "Type the password again: where it is sent changed (Port)" in body
    assert ProxyRule.objects.get(pk=rule.pk).port == lab.auth_proxy.port


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("host", "localhost", "Host"),
        ("port", "second capture", "Port"),
        ("protocol", "http", "Protocol"),
        ("resource", MDE_RESOURCE, "Resource"),
    ],
)
def test_the_edit_form_asks_for_the_secret_when_the_api_moves(admin_client, lab, field, value, named):
    from tests.browser_form import form_data

    siem = {
        "api_flavour": presets.SIEM,
        "resource": SIEM_RESOURCE,
        "api_version": presets.DEFAULT_API_VERSION[presets.SIEM],
    }
    fields = siem if field == "resource" else {}
    integration = lab.typed_for(**fields)
    edit = reverse("defender:integration-edit", args=[integration.pk])
    data = form_data(admin_client.get(edit).content.decode(), "integration-form")
    data[field] = [str(lab.second_capture.port) if value == "second capture" else value]
    lab.capture.forget()
    for url in (edit, reverse("defender:integration-edit-test", args=[integration.pk])):
        body = html.unescape(admin_client.post(url, data).content.decode())
        assert f"Type the client secret again: where it is sent changed ({named})" in body, url
    assert Integration.objects.get(pk=integration.pk).client_secret_destination == integration.client_secret_destination
    assert lab.capture.connections == 0 and lab.second_capture.connections == 0


def test_get_alerts_refuses_only_the_integration_whose_secret_would_move(admin_client, lab):
    from defender.models import Alert, AlertFetch
    from tests.factories import make_actor

    actor = make_actor(hostname=lab.simulator.actor_hostnames()[0][0])
    working = simulator_integration(lab.simulator, name="Simulator")
    moved = lab.typed_for(name="Moved")
    Integration.objects.filter(pk=moved.pk).update(port=lab.second_capture.port)

    url = reverse("defender:actor-get-alerts", args=[actor.pk])
    admin_client.post(url, {"integrations": [working.pk, moved.pk], "window": "30d"})

    refused = AlertFetch.objects.get(integration=moved)
    assert not refused.ok and "is not sent" in refused.message and "Port" in refused.message
    assert AlertFetch.objects.get(integration=working).ok
    assert Alert.objects.filter(integrations=working).exists()
    assert lab.second_capture.connections == 0


def test_the_integrations_page_says_the_secret_must_be_typed_again_and_why(admin_client, lab):
    rule = lab.rule_on(lab.proxy)
    integration = lab.typed_for(name="Defender EU", proxy_rule=rule)
    detail = reverse("defender:integration-detail", args=[integration.pk])
    assert "Type the client secret again" not in admin_client.get(detail).content.decode()
    ProxyRule.objects.filter(pk=rule.pk).update(port=lab.second_auth_proxy.port)
    page = html.unescape(admin_client.get(detail).content.decode())
    assert "Type the client secret again on the Edit page: since it was typed, the proxy's port changed" in page
