"""Settings > Proxy Rules: the list, Add/Edit with a write-only password, assignment, Delete, and the proxy's Test."""

import socket
import struct
import threading

import pytest
from django.urls import reverse

from defender.models import Integration, ProxyRule, TestRun
from defender.services import proxy_check
from tests.factories import make_integration, make_proxy_rule, simulator_integration
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER

LIST = reverse("defender:proxyrule-list")
ADD = reverse("defender:proxyrule-add")


def rule_data(**overrides):
    data = {
        "name": "Corporate proxy",
        "proxy_type": "http",
        "host": "proxy.corp.example",
        "port": "3128",
        "username": "",
        "password": "",
        "ca_certificate": "",
        "bypass_hosts": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def tunnel_to_itself(monkeypatch):
    """Point the Test's tunnel at the proxy under test, so it succeeds without reaching the internet."""

    def aim(server):
        monkeypatch.setattr(proxy_check, "PROBE_TARGET", (server.host, server.port))

    return aim


class Socks5Server:
    """Just enough SOCKS5 for the Test: the greeting, username/password auth (RFC 1929) and a CONNECT reply."""

    def __init__(self, username, password):
        self.username, self.password = username.encode(), password.encode()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with client:
                self.answer(client)

    def answer(self, client):
        _, count = client.recv(2)
        client.recv(count)
        client.sendall(b"\x05\x02")
        _, user_length = client.recv(2)
        user = client.recv(user_length)
        (password_length,) = client.recv(1)
        password = client.recv(password_length)
        if (user, password) != (self.username, self.password):
            client.sendall(b"\x01\x01")
            return
        client.sendall(b"\x01\x00")
        head = client.recv(5)
        client.recv(head[4] + 2)
        client.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 443))

    def close(self):
        self.listener.close()


# --- list, Add and Edit ---------------------------------------------------------------------------------------------


def test_the_list_shows_each_rule_with_the_number_of_integrations_using_it(admin_client):
    rule = make_proxy_rule(username="svc-proxy", bypass_hosts="localhost\n.corp.example")
    make_integration(proxy_rule=rule)
    html = admin_client.get(LIST).content.decode()
    assert "proxy.corp.example:3128" in html and "svc-proxy" in html and "localhost, .corp.example" in html
    assert '<td class="integrations">1</td>' in html or ">1</td>" in html


def test_a_viewer_sees_no_add_edit_or_delete(viewer_client):
    rule = make_proxy_rule()
    for url in (LIST, reverse("defender:proxyrule-detail", args=[rule.pk])):
        html = viewer_client.get(url).content.decode()
        for word in ("Add Proxy Rule", "> Edit", "> Delete", "> Test", "Save assignment"):
            assert word not in html, (url, word)


def test_adding_a_rule_stores_the_password_encrypted_and_never_shows_it(admin_client):
    response = admin_client.post(ADD, rule_data(username="svc-proxy", password="proxy-pass-123"))
    rule = ProxyRule.objects.get()
    assert response.status_code == 302
    assert rule.password == "proxy-pass-123"
    assert "proxy-pass-123" not in ProxyRule.objects.values_list("password", flat=True)[0]
    edit = admin_client.get(reverse("defender:proxyrule-edit", args=[rule.pk])).content.decode()
    assert "proxy-pass-123" not in edit
    assert "A password is saved. Leave blank to keep it" in edit


def test_a_blank_password_on_edit_keeps_the_saved_one(admin_client):
    rule = make_proxy_rule(username="svc-proxy", password="proxy-pass-123")
    data = rule_data(username="svc-proxy", name="Renamed proxy", bypass_hosts="intranet.corp.example")
    admin_client.post(reverse("defender:proxyrule-edit", args=[rule.pk]), data)
    rule.refresh_from_db()
    assert rule.name == "Renamed proxy" and rule.password == "proxy-pass-123"
    assert rule.to_settings().password == "proxy-pass-123"


def test_clearing_the_username_removes_the_password(admin_client):
    rule = make_proxy_rule(username="svc-proxy", password="proxy-pass-123")
    admin_client.post(reverse("defender:proxyrule-edit", args=[rule.pk]), rule_data())
    rule.refresh_from_db()
    assert rule.username == "" and not rule.has_password


def test_errors_appear_next_to_their_fields_and_nothing_is_saved(admin_client):
    response = admin_client.post(ADD, rule_data(port="abc", host="http://proxy/", proxy_type="ftp"))
    html = response.content.decode()
    assert "Enter a whole number." in html and "without http:// or https://" in html
    assert "Select a valid choice." in html
    assert not ProxyRule.objects.exists()


# --- assignment from the rule's side --------------------------------------------------------------------------------


def test_the_rules_page_assigns_and_unassigns_integrations(admin_client):
    rule = make_proxy_rule()
    other = make_proxy_rule(name="Branch proxy", host="branch.corp.example")
    staying = make_integration(name="Staying", proxy_rule=rule)
    moving = make_integration(name="Moving", host="us.api.security.microsoft.com", proxy_rule=other)
    dropped = make_integration(name="Dropped", host="uk.api.security.microsoft.com", proxy_rule=rule)
    page = admin_client.get(reverse("defender:proxyrule-detail", args=[rule.pk])).content.decode()
    assert "Moving (now: Branch proxy)" in page
    assign = reverse("defender:proxyrule-assign", args=[rule.pk])
    first = admin_client.post(assign, {"integrations": [staying.pk, moving.pk]}).content.decode()
    assert "Saving changes where the client secrets of Dropped and Moving go" in first
    assert Integration.objects.get(pk=dropped.pk).proxy_rule == rule  # nothing saved before the second Submit
    data = {"integrations": [staying.pk, moving.pk], "confirm_retyping": "yes"}
    response = admin_client.post(assign, data, follow=True)
    assert "is used by 2 integration(s)" in response.content.decode()
    assert set(rule.integrations.all()) == {staying, moving}
    assert Integration.objects.get(pk=dropped.pk).proxy_rule is None


# --- Delete ---------------------------------------------------------------------------------------------------------


def test_a_rule_in_use_cannot_be_deleted_and_the_page_names_its_integrations(admin_client):
    rule = make_proxy_rule()
    make_integration(name="Defender EU", proxy_rule=rule)
    url = reverse("defender:proxyrule-delete", args=[rule.pk])
    html = admin_client.get(url).content.decode()
    assert "cannot be deleted" in html and "Defender EU" in html
    assert '<button type="submit" class="btn btn-danger">' not in html
    response = admin_client.post(url)
    assert response.status_code == 409
    assert ProxyRule.objects.filter(pk=rule.pk).exists()


def test_an_unused_rule_is_deleted_after_confirmation(admin_client):
    rule = make_proxy_rule()
    response = admin_client.post(reverse("defender:proxyrule-delete", args=[rule.pk]), follow=True)
    assert "Proxy rule Corporate proxy was deleted." in response.content.decode()
    assert not ProxyRule.objects.exists()


# --- the proxy's Test -----------------------------------------------------------------------------------------------


def test_the_test_passes_through_a_proxy_that_accepts_its_credentials(admin_client, auth_proxy, tunnel_to_itself):
    tunnel_to_itself(auth_proxy)
    rule = make_proxy_rule(host=auth_proxy.host, port=auth_proxy.port, username=AUTH_USER, password=AUTH_PASSWORD)
    html = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True).content.decode()
    assert "The Test passed." in html
    assert f"accepted the credentials of {AUTH_USER}" in html
    assert auth_proxy.connect_targets == [f"{auth_proxy.host}:{auth_proxy.port}"]


def test_the_test_reports_proxy_credentials_rejected(admin_client, auth_proxy):
    rule = make_proxy_rule(host=auth_proxy.host, port=auth_proxy.port, username=AUTH_USER, password="wrong")
    html = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True).content.decode()
    assert "rejected its credentials (407)" in html
    assert "Check the username and password." in html
    assert "wrong" not in html.split("<main")[1]
    assert auth_proxy.rejected == 1


def test_the_test_of_an_open_proxy_skips_the_credentials_in_the_same_panel_as_an_integrations_test(
    admin_client, proxy, tunnel_to_itself
):
    tunnel_to_itself(proxy)
    rule = make_proxy_rule(host=proxy.host, port=proxy.port)
    response = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    run = TestRun.objects.get()
    assert body.lstrip().startswith(f'<section id="test-run-{run.pk}"') and "<html" not in body
    assert body.count('<strong class="step-name">') == 3
    assert "asked for none" in body and "The Test passed." in body
    assert run.proxy_rule == rule and run.title == f"proxy rule {rule.name}" and run.integration is None


def test_the_test_reports_a_tunnel_the_proxy_refuses(admin_client, proxy, closed_port, monkeypatch):
    monkeypatch.setattr(proxy_check, "PROBE_TARGET", ("127.0.0.1", closed_port))
    rule = make_proxy_rule(host=proxy.host, port=proxy.port)
    html = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True).content.decode()
    assert f"answered CONNECT 127.0.0.1:{closed_port} with HTTP/1.1 502 Bad Gateway" in html


def test_the_test_tunnels_to_the_hosts_of_the_integrations_that_use_the_rule(admin_client, proxy, simulator):
    # An isolated lab's proxy reaches only its integrations' hosts: the Test must ask for those, not the internet.
    rule = make_proxy_rule(host=proxy.host, port=proxy.port)
    simulator_integration(simulator, proxy_rule=rule)
    html = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True).content.decode()
    assert "The Test passed." in html
    assert f"opened a tunnel to {simulator.host}:{simulator.port}" in html
    assert proxy.connect_targets == [f"{simulator.host}:{simulator.port}"]


def test_the_test_names_the_integration_host_the_proxy_cannot_reach(admin_client, proxy, simulator, closed_port):
    rule = make_proxy_rule(host=proxy.host, port=proxy.port)
    simulator_integration(simulator, proxy_rule=rule)
    simulator_integration(simulator, name="Unreachable API", host="127.0.0.1", port=closed_port, proxy_rule=rule)
    html = admin_client.post(reverse("defender:proxyrule-test", args=[rule.pk]), follow=True).content.decode()
    assert f"answered CONNECT 127.0.0.1:{closed_port} with HTTP/1.1 502 Bad Gateway" in html
    assert f"{simulator.host}:{simulator.port}" in proxy.connect_targets


def test_hosts_on_the_bypass_list_are_not_tunnelled(db, simulator):
    rule = make_proxy_rule(bypass_hosts=simulator.host)
    simulator_integration(simulator, proxy_rule=rule)
    assert rule.tunnel_targets() == []


def test_the_test_is_bounded_by_its_timeout_when_the_proxy_never_answers(silent_listener, db):
    rule = make_proxy_rule(host=silent_listener.host, port=silent_listener.port)
    result = proxy_check.check_proxy(rule.to_settings(), timeout=0.3)
    assert not result.ok
    assert "did not answer within 0.3 s" in result.steps[1].message


def test_the_test_reports_a_closed_port(closed_port, db):
    rule = make_proxy_rule(host="127.0.0.1", port=closed_port)
    result = proxy_check.check_proxy(rule.to_settings(), timeout=1)
    assert [step.outcome for step in result.steps] == ["failed", "skipped", "skipped"]
    assert "refused" in result.steps[0].message


@pytest.mark.parametrize("password, ok", [("socks-pass", True), ("wrong", False)])
def test_a_socks5_proxy_is_greeted_and_checks_its_credentials(db, password, ok):
    server = Socks5Server("socks-user", "socks-pass")
    try:
        rule = make_proxy_rule(
            proxy_type="socks5", host=server.host, port=server.port, username="socks-user", password=password
        )
        result = proxy_check.check_proxy(rule.to_settings(), timeout=2)
    finally:
        server.close()
    assert result.ok is ok
    if not ok:
        assert "SOCKS proxy" in result.steps[1].message and "rejected its credentials" in result.steps[1].message


def test_a_viewer_may_not_test_or_change_a_rule(viewer_client):
    rule = make_proxy_rule()
    for name in ("proxyrule-test", "proxyrule-edit", "proxyrule-delete", "proxyrule-assign"):
        assert viewer_client.post(reverse(f"defender:{name}", args=[rule.pk])).status_code == 403, name


@pytest.mark.parametrize(
    "field, value",
    [("port", "9" * 30), ("port", "0"), ("host", "<b>proxy</b>"), ("ca_certificate", "not a PEM"), ("name", "x" * 500)],
)
def test_nothing_typed_into_a_rule_gives_a_server_error(admin_client, field, value):
    response = admin_client.post(ADD, rule_data(**{field: value}))
    assert response.status_code == 200
    assert "is-invalid" in response.content.decode()
    assert not ProxyRule.objects.exists()


def test_pointing_a_rule_at_another_proxy_needs_the_password_typed_again(admin_client):
    rule = make_proxy_rule(username="svc", password="proxy-pass-for-test")
    data = rule_data(username="svc", host="proxy.attacker.example")
    body = admin_client.post(f"/settings/proxy-rules/{rule.pk}/edit/", data).content.decode()
    assert "Type the password again: where it is sent changed (Host)" in body
    rule.refresh_from_db()
    assert rule.host == "proxy.corp.example"


def test_socks5_credentials_longer_than_127_bytes_are_refused_next_to_their_field(admin_client):
    data = rule_data(proxy_type="socks5", port="1080", username="ü" * 64, password="p" * 128)
    body = admin_client.post("/settings/proxy-rules/add/", data).content.decode()
    assert body.count("SOCKS5 allows at most 127 bytes here.") == 2
    assert not ProxyRule.objects.exists()


def test_a_typed_proxy_password_is_marked_sensitive_so_error_reports_hide_it(admin_client):
    response = admin_client.post("/settings/proxy-rules/add/", rule_data(port="abc"))
    assert response.wsgi_request.sensitive_post_parameters == ("password",)


def test_the_rule_page_names_its_integrations_heading_once(admin_client):
    rule = make_proxy_rule()
    html = admin_client.get(reverse("defender:proxyrule-detail", args=[rule.pk])).content.decode()
    assert html.count("Integrations using this proxy") == 1
