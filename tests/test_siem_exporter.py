"""The simulator's SIEM exporter lives on a listener of its own, as Microsoft's lives on hosts of its own
(wdatp-alertexporter-*.windows.com), and answers errors in its own plain-text shape, not the Defender API's OData
JSON; the services still turn each of those answers into a message a person can act on."""

import time

import pytest
import requests

from defender import presets
from defender.services import auth
from defender.services.client import ApiClient
from defender.services.connectivity import run_test
from defender.services.errors import ApiFailed, PermissionMissing
from tests.fixtures.connection import settings_for

SIEM_RESOURCE = "https://graph.windows.net"


def siem_token(simulator, tenant=None):
    """A v1 token for Azure AD Graph from the simulator's Entra ID; ``tenant`` forges the tenant it names."""
    if tenant is None:
        return auth.acquire_token(settings_for(simulator, presets.SIEM)).access_token
    now = int(time.time())
    claims = {"aud": SIEM_RESOURCE, "tid": tenant, "appid": simulator.app.client_id, "nbf": now, "exp": now + 600}
    return simulator.signer.sign(claims)


def get(simulator, token=None, base_url=None, path="/api/alerts", **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = (base_url or simulator.siem_base_url) + path
    return requests.get(url, params=params, headers=headers, verify=simulator.ca_path, timeout=5)


class Forged:
    """Tokens for ApiClient: always the same one, as a client whose token names another tenant would send."""

    def __init__(self, token):
        self.value = token

    def token(self):
        return self.value

    def drop(self):
        pass


def siem_call(simulator, tokens=None, **params):
    """The error a SIEM call through the services raises (ApiClient, real sockets, the SIEM listener)."""
    settings = settings_for(simulator, presets.SIEM)
    client = ApiClient(settings, tokens or auth.TokenSource(settings))
    with pytest.raises(ApiFailed) as raised:
        client.get_json(client.url("/api/alerts"), params or None)
    return raised.value


def test_the_siem_exporter_has_a_port_of_its_own_on_the_simulators_host(simulator):
    assert simulator.siem_host == simulator.host and simulator.siem_port not in (0, simulator.port)
    assert simulator.siem_base_url == f"https://{simulator.siem_host}:{simulator.siem_port}"


def test_the_siem_listener_serves_detections_to_a_siem_token(simulator):
    response = get(simulator, siem_token(simulator), ago="P31D")
    assert response.status_code == 200 and response.json() and "AlertId" in response.json()[0]


def test_a_siem_call_to_the_main_port_is_not_served_as_the_siem_exporter(simulator):
    response = get(simulator, siem_token(simulator), base_url=simulator.base_url, ago="P31D")
    assert response.status_code == 401 and "not valid for this API" in response.json()["error"]["message"]


def test_the_siem_listener_serves_nothing_but_its_alerts(simulator):
    response = get(simulator, siem_token(simulator), path="/api/machines")
    assert response.status_code == 404 and response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("token", "status"),
    [("", 401), ("not.a.token", 401), ("defender", 401), ("other-tenant", 403)],
)
def test_siem_errors_are_plain_text_not_odata_json(simulator, token, status):
    if token == "defender":
        token = auth.acquire_token(settings_for(simulator)).access_token
    elif token == "other-tenant":
        token = siem_token(simulator, tenant="11111111-2222-3333-4444-555555555555")
    response = get(simulator, token)
    assert response.status_code == status and response.headers["Content-Type"].startswith("text/plain")
    assert not response.text.lstrip().startswith("{")


def test_a_bad_since_time_is_a_plain_text_400_naming_the_parameter(simulator):
    response = get(simulator, siem_token(simulator), sinceTimeUtc="yesterday")
    assert response.status_code == 400 and "'sinceTimeUtc'" in response.text


def test_a_siem_401_says_the_token_was_rejected_and_what_to_check(simulator):
    error = siem_call(simulator, Forged("not.a.token"))
    assert str(error).startswith("The SIEM API rejected the token on /api/alerts (401 Unauthorized)")
    assert "Authorization has been denied for this request." in str(error) and "Check that the resource" in str(error)


def test_a_siem_403_gives_microsofts_documented_causes(simulator):
    error = siem_call(simulator, Forged(siem_token(simulator, tenant="11111111-2222-3333-4444-555555555555")))
    assert isinstance(error, PermissionMissing) and "(403 Forbidden)" in str(error)
    assert "not managed by the tenant's administrator, or the tenant is deleted" in str(error)


def test_a_siem_400_quotes_the_exporters_own_words_about_the_parameter(simulator):
    error = siem_call(simulator, sinceTimeUtc="yesterday")
    assert "HTTP 400 to /api/alerts" in str(error) and "parameter 'sinceTimeUtc'" in str(error)


def test_the_test_of_a_siem_integration_pointed_at_the_main_port_fails_saying_the_token_was_rejected(simulator):
    result = run_test(settings_for(simulator, presets.SIEM, port=simulator.port))
    assert not result.ok
    assert any("rejected the token on /api/alerts (401 Unauthorized)" in step.message for step in result.steps)
