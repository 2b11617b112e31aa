"""Certificate credentials against the simulator's Entra ID, over HTTPS with real msal: the client assertion is
signed by the key, names the certificate by its thumbprint, and is refused with Microsoft's AADSTS errors when it
does not hold."""

import logging

import pytest

from defender import presets
from defender.services import auth
from defender.services.client_certificate import CertificateProblem, parse_certificate_credential
from defender.services.connectivity import run_test
from defender.services.errors import TokenFailed
from defender.simulator.seed import make_certificate_pem
from tests.fixtures.connection import settings_for

FLAVOURS = [presets.MDE, presets.GRAPH, presets.SIEM]


@pytest.fixture(scope="module")
def unregistered_pem():
    return make_certificate_pem("Not registered on the app")


def certificate_settings(simulator, flavour=presets.MDE, pem=None, **overrides):
    return settings_for(
        simulator, flavour, client_secret="", client_certificate=pem or simulator.app.certificate_pem, **overrides
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_registered_certificate_gets_a_token_on_every_flavour(clean_simulator, flavour):
    token = auth.acquire_token(certificate_settings(clean_simulator, flavour), fresh=True)
    assert token.access_token and not token.from_cache


def test_the_test_passes_with_a_certificate_and_says_which_credential_it_used(clean_simulator):
    settings = certificate_settings(clean_simulator)
    prefix = parse_certificate_credential(settings.client_certificate).thumbprint_prefix
    result = run_test(settings)
    assert result.ok, result.summary
    token_step = next(step for step in result.steps if step.name == "Token")
    assert f"with the client certificate {prefix}…" in token_step.message


def test_the_test_with_a_secret_says_it_used_the_secret(clean_simulator):
    result = run_test(settings_for(clean_simulator))
    assert "with the client secret" in next(step for step in result.steps if step.name == "Token").message


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_certificate_not_registered_on_the_app_fails_with_the_aadsts700027_advice(
    clean_simulator, unregistered_pem, flavour
):
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(certificate_settings(clean_simulator, flavour, unregistered_pem), fresh=True)
    assert failure.value.code == 700027
    assert "AADSTS700027" in str(failure.value)
    assert "not registered on the app" in failure.value.advice


def test_a_registered_thumbprint_with_another_key_fails_the_signature_check(clean_simulator, unregistered_pem):
    # The registered certificate, but signed with another key: the header names a registered certificate, and the
    # signature does not verify with it. (The console refuses such a PEM; here the assertion is built by hand.)
    import jwt

    from defender.services.client_certificate import parse_certificate_credential as parse

    registered = parse(clean_simulator.app.certificate_pem)
    other = parse(unregistered_pem)
    header = {"x5t#S256": _b64(bytes.fromhex(registered.sha256_thumbprint))}
    url = f"{clean_simulator.auth_url}/{clean_simulator.tenant_id}/oauth2/v2.0/token"
    client_id = clean_simulator.app.client_id
    import time

    now = int(time.time())
    claims = {"aud": url, "iss": client_id, "sub": client_id, "jti": "1", "nbf": now, "exp": now + 600}
    assertion = jwt.encode(claims, other.private_key_pem, algorithm="PS256", headers=header)
    answer = _post(clean_simulator, url, client_id, assertion)
    assert answer.status_code == 401 and answer.json()["error_codes"] == [700027]
    assert "invalid signature" in answer.json()["error_description"]


def test_an_expired_assertion_is_refused_with_aadsts700024(clean_simulator):
    import time

    import jwt

    registered = parse_certificate_credential(clean_simulator.app.certificate_pem)
    url = f"{clean_simulator.auth_url}/{clean_simulator.tenant_id}/oauth2/v2.0/token"
    client_id = clean_simulator.app.client_id
    then = int(time.time()) - 3600
    claims = {"aud": url, "iss": client_id, "sub": client_id, "jti": "2", "nbf": then, "exp": then + 600}
    header = {"x5t#S256": _b64(bytes.fromhex(registered.sha256_thumbprint))}
    assertion = jwt.encode(claims, registered.private_key_pem, algorithm="PS256", headers=header)
    answer = _post(clean_simulator, url, client_id, assertion)
    assert answer.status_code == 401 and answer.json()["error_codes"] == [700024]


def test_an_assertion_for_another_audience_or_app_is_refused(clean_simulator):
    import time

    import jwt

    registered = parse_certificate_credential(clean_simulator.app.certificate_pem)
    url = f"{clean_simulator.auth_url}/{clean_simulator.tenant_id}/oauth2/v2.0/token"
    client_id = clean_simulator.app.client_id
    now = int(time.time())
    header = {"x5t#S256": _b64(bytes.fromhex(registered.sha256_thumbprint))}
    elsewhere = {"aud": "https://login.example/token", "iss": client_id, "sub": client_id, "exp": now + 600}
    other_app = {"aud": url, "iss": "someone-else", "sub": "someone-else", "exp": now + 600}
    for claims, code in ((elsewhere, 700023), (other_app, 700021)):
        assertion = jwt.encode(claims, registered.private_key_pem, algorithm="RS256", headers=header)
        assert _post(clean_simulator, url, client_id, assertion).json()["error_codes"] == [code]


def test_an_rs256_assertion_naming_the_sha1_thumbprint_is_accepted(clean_simulator):
    import time

    import jwt

    registered = parse_certificate_credential(clean_simulator.app.certificate_pem)
    url = f"{clean_simulator.auth_url}/{clean_simulator.tenant_id}/oauth2/v2.0/token"
    client_id = clean_simulator.app.client_id
    now = int(time.time())
    claims = {"aud": url, "iss": client_id, "sub": client_id, "jti": "3", "nbf": now, "exp": now + 600}
    header = {"x5t": _b64(bytes.fromhex(registered.sha1_thumbprint))}
    assertion = jwt.encode(claims, registered.private_key_pem, algorithm="RS256", headers=header)
    answer = _post(clean_simulator, url, client_id, assertion, scope="https://graph.microsoft.com/.default")
    assert answer.status_code == 200, answer.text


def test_the_certificate_is_in_no_repr_message_or_log(clean_simulator, unregistered_pem, caplog):
    caplog.set_level(logging.DEBUG)
    settings = certificate_settings(clean_simulator, pem=unregistered_pem)
    with pytest.raises(TokenFailed) as failure:
        auth.acquire_token(settings, fresh=True)
    key_line = parse_certificate_credential(unregistered_pem).private_key_pem.splitlines()[1]
    for text in (repr(settings), str(failure.value), failure.value.advice, repr(failure.value), caplog.text):
        assert key_line not in text and "PRIVATE KEY" not in text
    assert "client_assertion=ey" not in caplog.text


def test_a_pem_without_its_key_or_with_another_certificate_is_explained(clean_simulator, unregistered_pem):
    key_only = clean_simulator.app.certificate_pem.split("-----BEGIN CERTIFICATE-----")[0]
    certificate_only = (
        "-----BEGIN CERTIFICATE-----" + clean_simulator.app.certificate_pem.split("-----BEGIN CERTIFICATE-----")[1]
    )
    mismatched = key_only + "-----BEGIN CERTIFICATE-----" + unregistered_pem.split("-----BEGIN CERTIFICATE-----")[1]
    for pem, words in (
        (key_only, "No certificate"),
        (certificate_only, "No private key"),
        (mismatched, "does not belong to the private key"),
        ("nonsense", "No private key"),
    ):
        with pytest.raises(CertificateProblem, match=words):
            parse_certificate_credential(pem)


def _b64(data):
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _post(simulator, url, client_id, assertion, scope="https://api.securitycenter.microsoft.com/.default"):
    import requests

    return requests.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        verify=simulator.ca_path,
        timeout=5,
    )
