"""The HTTP seam: trust bundle, proxies, retries, re-authentication, paging and the translation of failures."""

import dataclasses
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from defender.services import auth, client, trust
from defender.services.client import ApiClient, retry_after_seconds
from defender.services.connection import ConnectionSettings
from defender.services.errors import ApiFailed, BadResponse, ConnectionFailed, ProxyFailed, Throttled, TlsFailed
from defender.services.route import route_for
from defender.services.transport import Transport
from defender.services.trust import trust_for
from tests.fixtures.connection import proxy_for, settings_for
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER


class Answer:
    """The little of a response ApiClient reads."""

    def __init__(self, status, content=b"{}", headers=None):
        self.status_code = status
        self.content = content
        self.headers = headers or {}


class BogusThenRealTokens:
    """A token source whose first token the API refuses, as after a rotation on the service side."""

    def __init__(self, settings, bogus_tokens=1):
        self.real = auth.TokenSource(settings)
        self.bogus_left = bogus_tokens
        self.drops = 0

    def token(self):
        return "not.a.token" if self.bogus_left > 0 else self.real.token()

    def drop(self):
        self.drops += 1
        self.bogus_left -= 1
        self.real.drop()


def _alerts_url(api):
    return api.url("/api/alerts")


def test_retry_after_in_seconds_or_as_an_http_date():
    assert retry_after_seconds(Answer(429, headers={"Retry-After": "7"})) == 7
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(Answer(429, headers={"Retry-After": later})) <= 30
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(Answer(429, headers={"Retry-After": past})) == 0
    assert retry_after_seconds(Answer(429, headers={"Retry-After": "99999999"})) == client.MAX_RETRY_AFTER
    assert retry_after_seconds(Answer(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_seconds(Answer(429)) is None


def test_trust_bundle_is_the_system_store_plus_the_integration_ca_in_a_private_file(simulator):
    path = trust_for(settings_for(simulator))
    with open(path) as bundle, open(trust.system_bundle()) as system:
        content, system_content = bundle.read(), system.read()
    assert simulator.ca_pem.strip() in content
    assert system_content.strip()[:200] in content
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert trust_for(settings_for(simulator)) == path


def test_trust_is_the_system_store_without_a_ca_and_off_when_verification_is_off(simulator):
    assert trust_for(settings_for(simulator, ca_certificate="")) == trust.system_bundle()
    assert trust_for(settings_for(simulator, verify_tls=False)) is False


def test_proxy_rule_applies_unless_the_host_is_on_its_bypass_list(simulator, proxy):
    settings = settings_for(simulator, proxy=proxy_for(proxy, bypass_hosts=(".corp.example",)))
    assert route_for(settings, "https://api.security.microsoft.com/api").proxies()["https"] == (
        f"http://127.0.0.1:{proxy.port}"
    )
    assert route_for(settings, "https://ws.corp.example/api").proxies() == {}


def test_environment_proxy_is_ignored_when_a_proxy_rule_is_assigned(clean_simulator, proxy, monkeypatch, closed_port):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NO_PROXY", "")
    settings = settings_for(clean_simulator, proxy=proxy_for(proxy))
    api = ApiClient(settings, auth.TokenSource(settings))
    assert api.get_json(_alerts_url(api), {"$top": 1})["value"]
    assert f"127.0.0.1:{clean_simulator.port}" in proxy.connect_targets


def test_environment_proxy_applies_when_no_rule_is_assigned(simulator, monkeypatch, closed_port):
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("NO_PROXY", "")
    assert (
        route_for(settings_for(simulator), "https://api.security.microsoft.com/")
        .proxies()["https"]
        .endswith(f":{closed_port}")
    )


def test_a_wrong_proxy_password_is_reported_as_wrong_proxy_credentials(simulator, auth_proxy):
    settings = settings_for(simulator, proxy=proxy_for(auth_proxy, AUTH_USER, "wrong-password"))
    with pytest.raises(ProxyFailed) as failure:
        auth.acquire_token(settings, fresh=True)
    assert "rejected its credentials (407" in str(failure.value)
    assert "username and password of the proxy rule" in str(failure.value)
    assert "wrong-password" not in str(failure.value) + repr(failure.value)


def test_proxy_with_the_right_password_carries_token_and_api_calls(clean_simulator, auth_proxy):
    settings = settings_for(clean_simulator, proxy=proxy_for(auth_proxy, AUTH_USER, AUTH_PASSWORD))
    api = ApiClient(settings, auth.TokenSource(settings))
    api.get_json(_alerts_url(api), {"$top": 1})
    assert auth_proxy.connect_targets and set(auth_proxy.connect_targets) == {f"127.0.0.1:{clean_simulator.port}"}
    assert {record.client_port for record in clean_simulator.requests} <= auth_proxy.upstream_ports


def test_429_beyond_the_wait_cap_fails_at_once_saying_when_to_try_again(clean_simulator):
    clean_simulator.faults.set(throttle_every=1, retry_after=600)
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    started = time.monotonic()
    with pytest.raises(Throttled) as failure:
        api.get_json(_alerts_url(api), {"$top": 1})
    assert time.monotonic() - started < 2
    assert "try again after" in str(failure.value)
    assert failure.value.retry_at > datetime.now(UTC) + timedelta(seconds=590)


def test_503_with_retry_after_is_retried_and_recovers(clean_simulator):
    clean_simulator.faults.set(fail_next=2, fail_status=503, fail_retry_after=1)
    settings = settings_for(clean_simulator)
    slept = []
    api = ApiClient(settings, auth.TokenSource(settings), sleep=slept.append)
    assert api.get_json(_alerts_url(api), {"$top": 1})["value"]
    assert slept == [1, 1]


def test_500_that_persists_fails_after_the_configured_retries_with_backoff(clean_simulator):
    clean_simulator.faults.set(fail_next=10, fail_status=500)
    settings = settings_for(clean_simulator, max_retries=2)
    slept = []
    api = ApiClient(settings, auth.TokenSource(settings), sleep=slept.append)
    with pytest.raises(ApiFailed) as failure:
        api.get_json(_alerts_url(api))
    assert failure.value.code == 500
    assert "after 3 attempts" in str(failure.value)
    assert slept == [0.5, 1.0]


def test_a_refused_token_gets_one_new_token_and_one_retry(clean_simulator):
    settings = settings_for(clean_simulator)
    tokens = BogusThenRealTokens(settings)
    api = ApiClient(settings, tokens)
    assert api.get_json(_alerts_url(api), {"$top": 1})["value"]
    assert tokens.drops == 1


def test_a_token_refused_twice_is_an_error_not_a_loop(clean_simulator):
    settings = settings_for(clean_simulator)
    tokens = BogusThenRealTokens(settings, bogus_tokens=5)
    api = ApiClient(settings, tokens)
    with pytest.raises(ApiFailed) as failure:
        api.get_json(_alerts_url(api))
    assert failure.value.code == 401
    assert tokens.drops == 1
    assert "not.a.token" not in str(failure.value)


def test_paging_falls_back_to_skip_when_the_next_link_is_missing(clean_simulator):
    clean_simulator.faults.set(missing_next_link_with_top=True)
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    ids = [alert["id"] for alert in api.iter_items("/api/alerts", page_size=7)]
    assert ids == [alert["id"] for alert in clean_simulator.alerts]


def test_paging_follows_next_links(clean_simulator):
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    ids = [alert["id"] for alert in api.iter_items("/api/alerts", page_size=25)]
    assert ids == [alert["id"] for alert in clean_simulator.alerts]
    assert clean_simulator.api_calls == -(-len(ids) // 25)


def test_a_next_link_to_another_host_is_not_followed(simulator):
    settings = settings_for(simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    pages = iter([Answer(200, b'{"value":[{"id":"1"}],"@odata.nextLink":"https://elsewhere.example/api/alerts"}')])
    api.transport = type("OnePage", (), {"send": lambda self, *a, **k: next(pages)})()
    with pytest.raises(BadResponse) as failure:
        list(api.iter_items("/api/alerts"))
    assert "elsewhere.example" in str(failure.value)


def test_untrusted_certificate_names_the_host_and_the_fix(simulator):
    settings = settings_for(simulator, ca_certificate="")
    with pytest.raises(TlsFailed) as failure:
        Transport(settings).get(simulator.base_url + "/")
    assert str(failure.value).startswith("The certificate for 127.0.0.1 is signed by an unknown CA.")
    assert "CA certificate in Advanced options" in str(failure.value)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_off_reaches_a_server_with_an_unknown_ca(simulator):
    settings = settings_for(simulator, ca_certificate="", verify_tls=False)
    assert (
        Transport(settings)
        .get(simulator.base_url + f"/{simulator.tenant_id}/v2.0/.well-known/openid-configuration")
        .status_code
        == 200
    )


def test_connection_refused_says_nothing_listens(simulator, closed_port):
    settings = settings_for(simulator, port=closed_port)
    with pytest.raises(ConnectionFailed) as failure:
        Transport(settings).get(f"https://127.0.0.1:{closed_port}/")
    assert f"Connection to 127.0.0.1:{closed_port} was refused" in str(failure.value)


def test_unresolvable_name_is_a_dns_failure(simulator):
    settings = settings_for(simulator, host="no-such-host.invalid")
    with pytest.raises(ConnectionFailed) as failure:
        Transport(settings).get("https://no-such-host.invalid/")
    assert "no-such-host.invalid could not be resolved (DNS)" in str(failure.value)


def test_slow_answer_is_a_read_timeout(clean_simulator):
    clean_simulator.faults.set(delay=1.5)
    settings = settings_for(clean_simulator, read_timeout=0.5)
    api = ApiClient(settings, auth.TokenSource(settings))
    with pytest.raises(ConnectionFailed) as failure:
        api.get_json(_alerts_url(api))
    assert "did not answer within 0.5 s (read timeout)" in str(failure.value)


def test_silent_port_fails_the_tls_handshake_within_the_connect_timeout(simulator, silent_listener):
    settings = dataclasses.replace(settings_for(simulator), port=silent_listener.port, connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TlsFailed) as failure:
        Transport(settings).get(f"https://127.0.0.1:{silent_listener.port}/")
    assert time.monotonic() - started < 2.5
    assert "does not complete a TLS handshake" in str(failure.value)


def test_a_wrong_socks5_password_is_reported_as_wrong_proxy_credentials(simulator, socks_proxy):
    settings = settings_for(simulator, proxy=proxy_for(socks_proxy, AUTH_USER, "wrong", proxy_type="socks5"))
    with pytest.raises(ProxyFailed) as failure:
        auth.acquire_token(settings, fresh=True)
    assert str(failure.value) == (
        f"The proxy 127.0.0.1:{socks_proxy.port} rejected its credentials. "
        "Check the username and password of the proxy rule."
    )


def test_an_unreachable_proxy_is_named(simulator, closed_port):
    settings = settings_for(simulator, proxy=proxy_for(type("Closed", (), {"host": "127.0.0.1", "port": closed_port})))
    with pytest.raises(ProxyFailed) as failure:
        auth.acquire_token(settings, fresh=True)
    assert f"Could not reach the proxy 127.0.0.1:{closed_port}: Connection refused." in str(failure.value)


def test_a_proxy_that_refuses_the_tunnel_says_so(simulator, proxy, closed_port):
    settings = settings_for(simulator, port=closed_port, proxy=proxy_for(proxy))
    with pytest.raises(ProxyFailed) as failure:
        Transport(settings).get(f"https://127.0.0.1:{closed_port}/")
    assert f"could not open a tunnel to 127.0.0.1:{closed_port} (502 Bad Gateway)" in str(failure.value)


# --- the proxy the environment names ------------------------------------------------------------------------------


def test_an_environment_proxy_that_refuses_is_named_by_the_calls_with_where_it_came_from(
    simulator, environment_proxy, closed_port
):
    environment_proxy(f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ProxyFailed) as failure:
        auth.acquire_token(settings_for(simulator), fresh=True)
    assert str(failure.value) == (
        f"Could not reach the proxy 127.0.0.1:{closed_port} (from HTTPS_PROXY): Connection refused. "
        "Check the host and port in HTTPS_PROXY in this site's environment."
    )


def test_an_environment_proxy_that_works_carries_the_calls(clean_simulator, proxy, environment_proxy):
    environment_proxy(f"127.0.0.1:{proxy.port}")  # without a scheme, as requests reads it: an HTTP proxy
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    assert api.get_json(_alerts_url(api), {"$top": 1})["value"]
    assert set(proxy.connect_targets) == {f"127.0.0.1:{clean_simulator.port}"}
    assert {record.client_port for record in clean_simulator.requests} <= proxy.upstream_ports


def test_no_proxy_naming_the_host_makes_the_calls_go_direct(clean_simulator, environment_proxy, closed_port):
    environment_proxy(f"http://127.0.0.1:{closed_port}", no_proxy="example.com, 127.0.0.1")
    settings = settings_for(clean_simulator)
    api = ApiClient(settings, auth.TokenSource(settings))
    assert api.get_json(_alerts_url(api), {"$top": 1})["value"]
    assert route_for(settings, settings.base_url).proxy is None


def test_the_lower_case_variable_wins_and_an_empty_one_means_no_proxy(environment_proxy, monkeypatch, closed_port):
    environment_proxy(f"http://127.0.0.1:{closed_port}")
    settings = ConnectionSettings(flavour="mde", host="api.example.com", client_id="a", tenant_id="t", auth_url="x")
    monkeypatch.setenv("https_proxy", "http://lower.example:3128")
    assert route_for(settings, settings.base_url).proxy_name == "lower.example:3128 (from https_proxy)"
    monkeypatch.setenv("https_proxy", "")
    assert route_for(settings, settings.base_url).proxy is None


def test_an_environment_proxy_this_console_cannot_speak_is_refused_without_showing_its_url(environment_proxy):
    environment_proxy("socks4://user:hunter22@127.0.0.1:1080")
    settings = ConnectionSettings(flavour="mde", host="api.example.com", client_id="a", tenant_id="t", auth_url="x")
    with pytest.raises(ProxyFailed) as failure:
        route_for(settings, settings.base_url)
    assert str(failure.value).startswith("HTTPS_PROXY names a socks4 proxy, which this console does not speak.")
    assert "hunter22" not in str(failure.value)
