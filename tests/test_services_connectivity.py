"""The Test, step by step, against the simulator over real sockets, TLS and msal."""

import contextlib
import dataclasses
import socket
import ssl
import threading
import time

import pytest
import trustme

from defender import presets
from defender.services.connectivity import STEP_NAMES, iter_test_steps, run_test
from defender.services.process import PROCESS
from tests.fixtures.connection import proxy_for, settings_for
from tests.fixtures.proxy import AUTH_PASSWORD, AUTH_USER


@pytest.fixture(autouse=True)
def fresh_credentials():
    PROCESS.clear()
    yield


def _outcomes(result):
    return [step.outcome for step in result.steps]


def _failed(result):
    return next(step for step in result.steps if step.outcome == "failed")


def test_every_step_passes_against_the_simulator(simulator):
    result = run_test(settings_for(simulator))
    assert result.ok, result.steps
    assert [step.name for step in result.steps] == list(STEP_NAMES)
    assert _outcomes(result) == ["passed"] * 6
    messages = {step.name: step.message for step in result.steps}
    assert "127.0.0.1 is an IP address" in messages["DNS lookup"]
    assert f"Connected to 127.0.0.1:{simulator.port}" in messages["TCP connection"]
    assert "is trusted and valid until" in messages["TLS handshake"]
    assert "issued a token for https://api.securitycenter.microsoft.com/.default" in messages["Token"]
    assert "Alert.Read.All, Machine.Read.All" in messages["Permissions"]
    assert messages["API call"] == "GET /api/v1.0/alerts answered 200 with 1 alert."
    assert result.summary.startswith("All steps passed in")


def test_graph_test_checks_the_security_alert_role(simulator):
    result = run_test(settings_for(simulator, presets.GRAPH))
    assert result.ok, result.steps
    assert "SecurityAlert.Read.All" in result.steps[4].message


def test_siem_test_skips_the_role_check_and_proves_access_by_the_call(simulator):
    result = run_test(settings_for(simulator, presets.SIEM))
    assert result.ok, result.steps
    assert _outcomes(result) == ["passed", "passed", "passed", "passed", "skipped", "passed"]


def test_a_host_name_is_resolved(simulator):
    result = run_test(settings_for(simulator, host="localhost"))
    assert "localhost resolves to" in result.steps[0].message


def test_an_unresolvable_host_fails_at_dns_and_skips_the_rest(simulator):
    result = run_test(settings_for(simulator, host="no-such-host.invalid"))
    assert not result.ok
    assert _outcomes(result) == ["failed"] + ["skipped"] * 5
    assert "no-such-host.invalid could not be resolved (DNS)" in result.steps[0].message
    assert result.summary.startswith("DNS lookup failed: The name no-such-host.invalid")


def test_a_closed_port_fails_at_tcp_saying_nothing_listens(simulator, closed_port):
    result = run_test(settings_for(simulator, port=closed_port))
    assert _outcomes(result) == ["passed", "failed"] + ["skipped"] * 4
    assert f"Connection to 127.0.0.1:{closed_port} was refused" in result.steps[1].message


def test_a_port_that_never_answers_fails_at_tls_within_the_connect_timeout(simulator, silent_listener):
    settings = settings_for(simulator, port=silent_listener.port, connect_timeout=1.0, read_timeout=30.0)
    started = time.monotonic()
    result = run_test(settings)
    assert time.monotonic() - started < 5
    assert _outcomes(result) == ["passed", "passed", "failed"] + ["skipped"] * 3
    assert "does not complete a TLS handshake" in result.steps[2].message


def test_an_untrusted_ca_fails_at_tls_naming_the_issuer_then_passes_once_the_ca_is_set(simulator):
    failing = run_test(settings_for(simulator, ca_certificate=""))
    assert _outcomes(failing) == ["passed", "passed", "failed"] + ["skipped"] * 3
    message = failing.steps[2].message
    assert message.startswith("The certificate for 127.0.0.1 is signed by an unknown CA (issuer: trustme")
    assert "set the CA certificate in Advanced options" in message.replace("Set", "set")
    assert run_test(settings_for(simulator)).ok


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_off_passes_with_a_warning(simulator):
    result = run_test(settings_for(simulator, ca_certificate="", verify_tls=False))
    assert result.ok, result.steps
    assert "certificate verification is OFF" in result.steps[2].message


def test_wrong_secret_fails_at_token_step_with_value_not_id_advice(simulator):
    result = run_test(settings_for(simulator, client_secret=simulator.app.secret_id))
    assert _outcomes(result) == ["passed"] * 3 + ["failed", "skipped", "skipped"]
    assert "AADSTS7000215" in result.steps[3].message
    assert "paste the secret's Value, not its ID" in result.steps[3].message


def test_expired_secret_fails_at_token_step(simulator):
    result = run_test(settings_for(simulator, app=simulator.app_expired_secret))
    assert "AADSTS7000222" in _failed(result).message and "create a new one" in _failed(result).message


def test_unknown_tenant_fails_at_token_step(simulator):
    result = run_test(settings_for(simulator, tenant_id="nobody.onmicrosoft.com"))
    assert _failed(result).name == "Token"
    assert "check the tenant ID, the cloud and the Auth URL" in _failed(result).message


def test_unknown_app_fails_at_token_step(simulator):
    result = run_test(settings_for(simulator, client_id="0b6f1d2e-0000-4000-8000-00000000bbbb"))
    assert _failed(result).name == "Token"
    assert "AADSTS700016" in _failed(result).message


def test_missing_role_names_machine_read_all_and_where_to_grant_it(simulator):
    result = run_test(settings_for(simulator, app=simulator.app_without_machine_role))
    assert _outcomes(result) == ["passed"] * 4 + ["failed", "skipped"]
    message = result.steps[4].message
    assert message.startswith("The token lacks Machine.Read.All (it has Alert.Read.All).")
    assert "Azure portal > App registrations" in message and "WindowsDefenderATP > Application permissions" in message
    assert "Grant admin consent" in message


def test_app_without_any_role_is_told_so(simulator):
    result = run_test(settings_for(simulator, presets.GRAPH, app=simulator.app_without_roles))
    assert "lacks SecurityAlert.Read.All (it has no application roles)" in _failed(result).message
    assert "Microsoft Graph" in _failed(result).message


def test_a_failing_api_call_is_reported_at_the_last_step(clean_simulator):
    clean_simulator.faults.set(fail_next=10, fail_status=500)
    result = run_test(settings_for(clean_simulator, max_retries=0))
    assert _outcomes(result) == ["passed"] * 5 + ["failed"]
    assert "failed with HTTP 500 on /api/v1.0/alerts" in result.steps[5].message


def test_traffic_goes_through_the_proxy_for_token_and_api_calls(clean_simulator, proxy):
    result = run_test(settings_for(clean_simulator, proxy=proxy_for(proxy)))
    assert result.ok, result.steps
    assert f"Connected to the proxy 127.0.0.1:{proxy.port}" in result.steps[1].message
    target = f"127.0.0.1:{clean_simulator.port}"
    assert proxy.connect_targets and set(proxy.connect_targets) == {target}
    # Every token and API request the simulator saw came in on one of the proxy's tunnels.
    seen = [record for record in clean_simulator.requests if record.kind in ("discovery", "token", "api")]
    assert {record.kind for record in seen} == {"discovery", "token", "api"}
    assert {record.client_port for record in seen} <= proxy.upstream_ports


def test_a_wrong_proxy_password_fails_with_a_proxy_credentials_message(simulator, auth_proxy):
    result = run_test(settings_for(simulator, proxy=proxy_for(auth_proxy, AUTH_USER, "wrong")))
    assert _outcomes(result) == ["passed", "failed"] + ["skipped"] * 4
    assert "rejected its credentials (407 Proxy Authentication Required)" in result.steps[1].message
    assert "username and password of the proxy rule" in result.steps[1].message


def test_the_right_proxy_password_passes(simulator, auth_proxy):
    assert run_test(settings_for(simulator, proxy=proxy_for(auth_proxy, AUTH_USER, AUTH_PASSWORD))).ok


def test_a_bypassed_host_does_not_use_the_proxy(simulator, proxy):
    result = run_test(settings_for(simulator, proxy=proxy_for(proxy, bypass_hosts=("127.0.0.1",))))
    assert result.ok
    assert proxy.connect_targets == []


def test_steps_are_yielded_as_they_finish(simulator, closed_port):
    steps = iter_test_steps(settings_for(simulator, port=closed_port))
    first = next(steps)
    assert first.name == "DNS lookup" and first.outcome == "passed"
    assert next(steps).outcome == "failed"
    steps.close()


def test_a_granted_permission_shows_at_the_next_test(clean_simulator):
    # The Test asks for a fresh token each time, so it never reports the roles of a token cached an hour ago.
    settings = settings_for(clean_simulator)
    run_test(settings)
    run_test(settings)
    assert clean_simulator.token_requests == 2


def test_step_durations_are_measured(simulator):
    result = run_test(dataclasses.replace(settings_for(simulator)))
    assert all(step.duration_ms >= 0 for step in result.steps)
    assert result.steps[3].duration_ms > 0


def test_a_socks5_proxy_carries_the_probe_token_and_api_calls(clean_simulator, socks_proxy):
    settings = settings_for(
        clean_simulator, proxy=proxy_for(socks_proxy, AUTH_USER, AUTH_PASSWORD, proxy_type="socks5")
    )
    result = run_test(settings)
    assert result.ok, result.steps
    seen = [record for record in clean_simulator.requests if record.kind in ("token", "api")]
    assert seen and {record.client_port for record in seen} <= socks_proxy.upstream_ports


def test_a_wrong_socks5_password_fails_at_tcp(simulator, socks_proxy):
    settings = settings_for(simulator, proxy=proxy_for(socks_proxy, AUTH_USER, "wrong", proxy_type="socks5"))
    result = run_test(settings)
    assert _outcomes(result) == ["passed", "failed"] + ["skipped"] * 4
    assert "SOCKS proxy" in result.steps[1].message and "rejected its credentials" in result.steps[1].message


def test_a_proxy_that_cannot_reach_the_host_says_so(simulator, proxy, closed_port):
    result = run_test(settings_for(simulator, port=closed_port, proxy=proxy_for(proxy)))
    assert f"refused to open a tunnel to 127.0.0.1:{closed_port} (HTTP/1.1 502 Bad Gateway)" in result.steps[1].message


def test_plain_http_to_a_port_that_speaks_https_fails_at_tls_advising_the_protocol(simulator):
    result = run_test(settings_for(simulator, protocol="http"))
    by_name = {step.name: step for step in result.steps}
    assert by_name["TLS handshake"].outcome == "failed"
    assert "speaks HTTPS, but the integration's Protocol is HTTP" in by_name["TLS handshake"].message
    assert "Set Protocol to HTTPS" in by_name["TLS handshake"].message
    assert by_name["Token"].outcome == "skipped"


@pytest.fixture
def tls_server_for_another_name():
    """A TLS server on 127.0.0.1 whose certificate names only other.example, and the CA that signed it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):
                context.wrap_socket(client, server_side=True).close()

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], ca.cert_pem.bytes().decode()
    listener.close()


def test_a_certificate_for_another_name_advises_checking_the_host_not_setting_a_ca(
    simulator, tls_server_for_another_name
):
    port, ca_pem = tls_server_for_another_name
    result = run_test(settings_for(simulator, port=port, ca_certificate=ca_pem))
    message = result.steps[2].message
    assert "is not valid for that name" in message
    assert "Check the host name" in message
    assert "CA certificate" not in message


# --- the proxy the environment names ------------------------------------------------------------------------------


def test_an_environment_proxy_that_refuses_fails_the_tcp_step_naming_that_proxy_not_the_api(
    simulator, environment_proxy, closed_port
):
    environment_proxy(f"http://127.0.0.1:{closed_port}")
    result = run_test(settings_for(simulator))
    assert _outcomes(result) == ["passed", "failed"] + ["skipped"] * 4
    assert result.steps[0].message == "The proxy 127.0.0.1 (from HTTPS_PROXY) is an IP address; nothing to look up."
    assert result.steps[1].message.startswith(
        f"Connection to the proxy 127.0.0.1:{closed_port} (from HTTPS_PROXY) was refused: nothing listens on that port."
    )
    assert str(simulator.port) not in result.steps[1].message


def test_an_environment_proxy_that_works_carries_the_test_and_its_calls(clean_simulator, proxy, environment_proxy):
    environment_proxy(f"http://127.0.0.1:{proxy.port}")
    result = run_test(settings_for(clean_simulator))
    assert result.ok, result.steps
    assert result.steps[1].message == (
        f"Connected to the proxy 127.0.0.1:{proxy.port} (from HTTPS_PROXY), which opened a tunnel to "
        f"127.0.0.1:{clean_simulator.port}."
    )
    seen = [record for record in clean_simulator.requests if record.kind in ("discovery", "token", "api")]
    assert {record.kind for record in seen} == {"discovery", "token", "api"}
    assert {record.client_port for record in seen} <= proxy.upstream_ports


def test_a_socks5_proxy_in_all_proxy_carries_the_test_and_its_calls(clean_simulator, socks_proxy, environment_proxy):
    environment_proxy(f"socks5://{AUTH_USER}:{AUTH_PASSWORD}@127.0.0.1:{socks_proxy.port}", variable="ALL_PROXY")
    result = run_test(settings_for(clean_simulator))
    assert result.ok, result.steps
    assert "(from ALL_PROXY)" in result.steps[1].message
    seen = [record for record in clean_simulator.requests if record.kind in ("token", "api")]
    assert seen and {record.client_port for record in seen} <= socks_proxy.upstream_ports


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.0/8", "*"])
def test_no_proxy_naming_the_host_makes_the_test_and_its_calls_go_direct(
    clean_simulator, environment_proxy, closed_port, no_proxy
):
    environment_proxy(f"http://127.0.0.1:{closed_port}", no_proxy=no_proxy)
    result = run_test(settings_for(clean_simulator))
    assert result.ok, result.steps
    assert result.steps[1].message == f"Connected to 127.0.0.1:{clean_simulator.port}."


def test_a_proxy_rule_wins_over_the_environment_in_the_test_too(clean_simulator, proxy, environment_proxy, closed_port):
    environment_proxy(f"http://127.0.0.1:{closed_port}")
    result = run_test(settings_for(clean_simulator, proxy=proxy_for(proxy)))
    assert result.ok, result.steps
    assert f"Connected to the proxy 127.0.0.1:{proxy.port}, which" in result.steps[1].message


# --- HTTPS proxies: TLS to the proxy, and the API's TLS inside that --------------------------------------------------


def test_an_https_proxy_carries_the_test_and_its_calls_with_tls_inside_tls(clean_simulator, https_proxy):
    settings = settings_for(
        clean_simulator, proxy=proxy_for(https_proxy, proxy_type="https", ca_certificate=https_proxy.ca_pem)
    )
    result = run_test(settings)
    assert result.ok, result.steps
    assert f"Connected to the proxy 127.0.0.1:{https_proxy.port}" in result.steps[1].message
    assert "is trusted and valid until" in result.steps[2].message
    seen = [record for record in clean_simulator.requests if record.kind in ("token", "api")]
    assert seen and {record.client_port for record in seen} <= https_proxy.upstream_ports


def test_an_https_proxy_with_an_untrusted_certificate_fails_the_tcp_step_naming_the_proxy(simulator, https_proxy):
    result = run_test(settings_for(simulator, proxy=proxy_for(https_proxy, proxy_type="https")))
    assert _outcomes(result) == ["passed", "failed"] + ["skipped"] * 4
    assert result.steps[1].message.startswith(
        f"The certificate for the proxy 127.0.0.1:{https_proxy.port} is signed by an unknown CA."
    )
    assert "the proxy's CA in the proxy rule" in result.steps[1].message


@pytest.mark.parametrize(("flavour", "role"), [("mde", "AdvancedQuery.Read.All"), ("graph", "ThreatHunting.Read.All")])
def test_the_permission_step_says_whether_outcomes_can_check_telemetry(simulator, flavour, role):
    granted = run_test(settings_for(simulator, flavour=flavour))
    lacking = run_test(settings_for(simulator, flavour=flavour, app=simulator.app_without_hunting))

    assert granted.ok and lacking.ok  # alerts need no hunting role: the Test passes either way
    assert f"With {role}, detection outcomes check telemetry too." in granted.steps[4].message
    message = lacking.steps[4].message
    assert f"It lacks {role}: detection outcomes cannot check telemetry" in message
    assert f"Grant {role} in the Azure portal" in message
