"""Token acquisition: authority, scope per flavour and cloud, msal over the shared HTTP seam, caching, AADSTS advice."""

import dataclasses

import pytest

from defender import presets
from defender.services import alerts, auth
from defender.services.connection import ConnectionSettings
from defender.services.connectivity import run_test
from defender.services.errors import Throttled, TlsFailed, TokenFailed
from defender.services.process import PROCESS
from tests.fixtures.connection import settings_for


@pytest.fixture(autouse=True)
def fresh_credentials():
    PROCESS.clear()
    yield
    PROCESS.clear()


def _settings(**fields):
    values = {
        "flavour": presets.MDE,
        "host": "api.security.microsoft.com",
        "client_id": "0b6f1d2e-0000-4000-8000-00000000bbbb",
        "tenant_id": "contoso.onmicrosoft.com",
        "auth_url": "https://login.microsoftonline.com",
    }
    values.update(fields)
    return ConnectionSettings(**values)


@pytest.mark.parametrize(
    "auth_url",
    [
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.com/",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/token",
        " https://login.microsoftonline.com/common ",
    ],
)
def test_authority_is_the_auth_url_host_plus_the_tenant_whatever_form_the_url_takes(auth_url):
    assert (
        auth.authority_url(_settings(auth_url=auth_url)) == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    )


@pytest.mark.parametrize(
    "host", ["api.security.microsoft.com", "eu.api.security.microsoft.com", "api-uk.securitycenter.microsoft.com"]
)
def test_defender_scope_is_the_global_resource_whatever_the_regional_host(host):
    assert auth.scope_for(_settings(host=host)) == "https://api.securitycenter.microsoft.com/.default"


def test_defender_scope_uses_a_documented_resource_alias_when_set():
    settings = _settings(resource="https://securitycenter.onmicrosoft.com/windowsatpservice/")
    assert auth.scope_for(settings) == "https://securitycenter.onmicrosoft.com/windowsatpservice/.default"


@pytest.mark.parametrize(
    ("host", "resource"),
    [
        ("api-gcc.securitycenter.microsoft.us", "https://api-gcc.securitycenter.microsoft.us"),
        ("api-gov.securitycenter.microsoft.us", "https://api-gov.securitycenter.microsoft.us"),
    ],
)
def test_us_government_defender_hosts_take_their_own_resource(host, resource):
    assert auth.scope_for(_settings(host=host)) == f"{resource}/.default"
    assert auth.scope_for(_settings(host=host, resource=resource)) == f"{resource}/.default"


@pytest.mark.parametrize(
    ("host", "resource", "scope"),
    [
        ("graph.microsoft.com", "", "https://graph.microsoft.com/.default"),
        ("graph.microsoft.us", "https://graph.microsoft.us", "https://graph.microsoft.us/.default"),
        ("dod-graph.microsoft.us", "", "https://dod-graph.microsoft.us/.default"),
    ],
)
def test_graph_scope_follows_the_national_cloud(host, resource, scope):
    assert auth.scope_for(_settings(flavour=presets.GRAPH, host=host, resource=resource)) == scope


def test_siem_resource_is_azure_ad_graph():
    assert auth.resource_for(_settings(flavour=presets.SIEM, host="wdatp-alertexporter-us.windows.com")) == (
        "https://graph.windows.net"
    )


def test_mde_token_comes_from_the_v2_endpoint_with_the_roles_granted(clean_simulator):
    token = auth.acquire_token(settings_for(clean_simulator))
    assert token.claims["aud"] == "https://api.securitycenter.microsoft.com"
    assert {"Alert.Read.All", "Machine.Read.All"} <= set(token.roles)
    assert clean_simulator.token_requests_by_endpoint == {"v2.0": 1}


def test_siem_token_is_a_v1_token_for_azure_ad_graph(clean_simulator):
    token = auth.acquire_token(settings_for(clean_simulator, presets.SIEM))
    assert token.claims["aud"] == "https://graph.windows.net"
    assert token.claims["ver"] == "1.0"
    assert clean_simulator.token_requests_by_endpoint == {"v1": 1}


def test_token_calls_trust_the_integration_ca_although_requests_ca_bundle_is_set(clean_simulator, monkeypatch):
    # REQUESTS_CA_BUNDLE would replace a session's verify; msal's calls must still use the integration's CA.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert auth.acquire_token(settings_for(clean_simulator)).access_token
    with pytest.raises(TlsFailed) as failure:
        auth.acquire_token(settings_for(clean_simulator, ca_certificate=""))
    assert "signed by an unknown CA" in str(failure.value)


def test_hundred_alert_lookups_cost_one_token_request(clean_simulator):
    settings = settings_for(clean_simulator)
    for _ in range(100):
        alerts.probe_api(settings)
    assert clean_simulator.token_requests == 1
    assert clean_simulator.api_calls == 100


def test_a_corrected_secret_takes_effect_at_once(clean_simulator):
    right = settings_for(clean_simulator)
    wrong = dataclasses.replace(right, client_secret="not-the-secret")
    with pytest.raises(TokenFailed):
        auth.acquire_token(wrong)
    assert auth.acquire_token(right).access_token
    # And going back to the wrong secret does not reuse the good token.
    with pytest.raises(TokenFailed):
        auth.acquire_token(wrong)


def test_a_fresh_token_is_fetched_when_asked(clean_simulator):
    settings = settings_for(clean_simulator)
    auth.acquire_token(settings)
    assert auth.acquire_token(settings).from_cache
    assert not auth.acquire_token(settings, fresh=True).from_cache
    assert clean_simulator.token_requests == 2


def test_wrong_secret_fails_with_value_not_id_advice(simulator):
    settings = dataclasses.replace(settings_for(simulator), client_secret=simulator.app.secret_id)
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings)
    assert failure.value.code == 7000215
    assert "paste the secret's Value, not its ID" in str(failure.value)


def test_expired_secret_says_to_create_a_new_one(simulator):
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings_for(simulator, app=simulator.app_expired_secret))
    assert failure.value.code == 7000222
    assert "expired" in str(failure.value) and "create a new one" in str(failure.value)


def test_unknown_app_points_at_client_and_tenant_ids(simulator):
    settings = dataclasses.replace(settings_for(simulator), client_id="0b6f1d2e-0000-4000-8000-00000000bbbb")
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings)
    assert failure.value.code == 700016
    assert "check the client ID and the tenant ID" in str(failure.value)


def test_unknown_tenant_fails_at_discovery_with_tenant_advice(simulator):
    settings = dataclasses.replace(settings_for(simulator), tenant_id="nobody.onmicrosoft.com")
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings)
    assert failure.value.code == 90002
    assert "nobody.onmicrosoft.com" in str(failure.value)
    assert "check the tenant ID, the cloud and the Auth URL" in str(failure.value)


def test_unknown_tenant_on_the_v1_endpoint_gets_the_same_advice(simulator):
    settings = dataclasses.replace(settings_for(simulator, presets.SIEM), tenant_id="nobody.onmicrosoft.com")
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings)
    assert failure.value.code == 90002


def test_unknown_resource_says_defender_is_not_in_the_tenant(simulator):
    settings = settings_for(simulator, presets.SIEM, resource="https://not-provisioned.example.com")
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings)
    assert failure.value.code == 500011
    assert "not provisioned" in str(failure.value)


def test_token_claims_of_something_that_is_not_a_jwt_are_empty():
    assert auth.token_claims("not-a-jwt") == {}
    assert auth.token_claims("a.!!!.c") == {}


def _token_requests(simulator):
    return [record for record in simulator.requests if record.kind == "token"]


@pytest.mark.parametrize("flavour", [presets.MDE, presets.SIEM])
def test_a_throttle_from_entra_says_it_was_entra_and_for_how_long(clean_simulator, flavour):
    # As Microsoft documents it for the client credentials grant: 429, Retry-After and no JSON body.
    clean_simulator.faults.set(throttle_every=1, applies_to="token", retry_after=600)
    with pytest.raises(Throttled) as failure:
        auth.acquire_token(settings_for(clean_simulator, flavour))
    assert str(failure.value).startswith(
        f"Entra ID throttled this app: retry after 600 s (HTTP 429 from 127.0.0.1:{clean_simulator.port})."
    )
    assert "not JSON" not in str(failure.value)
    assert failure.value.code == 429 and failure.value.retry_at is not None


@pytest.mark.parametrize("flavour", [presets.MDE, presets.SIEM])
def test_a_throttle_with_an_aadsts50196_body_names_the_code_too(clean_simulator, flavour):
    clean_simulator.faults.set(throttle_every=1, applies_to="token", retry_after=600, token_429_without_body=False)
    with pytest.raises(Throttled) as failure:
        auth.acquire_token(settings_for(clean_simulator, flavour))
    assert str(failure.value).startswith(
        f"Entra ID throttled this app: retry after 600 s (HTTP 429 from 127.0.0.1:{clean_simulator.port}, AADSTS50196)."
    )


def test_after_entra_recovers_a_test_asks_it_again_while_alert_lookups_wait_out_the_replayed_throttle(
    clean_simulator,
):
    settings = settings_for(clean_simulator)
    clean_simulator.faults.set(throttle_every=1, applies_to="token", retry_after=600)
    with pytest.raises(Throttled):
        auth.acquire_token(settings)
    clean_simulator.faults.clear()  # Entra ID has recovered
    asked = len(_token_requests(clean_simulator))

    # msal replays Entra ID's 429 without asking it: an alert lookup says so, and how long is left.
    with pytest.raises(Throttled) as replayed:
        auth.acquire_token(settings)
    assert len(_token_requests(clean_simulator)) == asked
    seconds = int(str(replayed.value).removeprefix("Entra ID throttled this app: retry after ").split(" ")[0])
    assert 590 <= seconds <= 600
    assert "a Test asks Entra ID at once" in str(replayed.value)

    # The Test asks Entra ID afresh, and passes.
    result = run_test(settings)
    assert result.ok, result.summary
    assert len(_token_requests(clean_simulator)) == asked + 1
    assert auth.acquire_token(settings).from_cache  # and what it got serves the alert lookups from now on
