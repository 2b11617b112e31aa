"""The error type, AADSTS advice, and the promise that no secret or token reaches a message, a repr or a log."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from defender import presets
from defender.services import alerts, auth, connectivity
from defender.services.client import ApiClient
from defender.services.connection import ConnectionSettings
from defender.services.errors import DefenderError, TokenFailed, aadsts_advice, redact
from defender.services.process import PROCESS
from tests.fixtures.connection import proxy_for, settings_for
from tests.fixtures.proxy import AUTH_USER


def test_str_is_the_message_then_the_advice():
    error = TokenFailed("Entra ID refused.", "Check the secret.", code=7000215)
    assert str(error) == "Entra ID refused. Check the secret."
    assert str(DefenderError("Just a message.")) == "Just a message."
    assert repr(error) == "TokenFailed('Entra ID refused.', advice='Check the secret.', code=7000215)"


@pytest.mark.parametrize(
    ("codes", "code", "words"),
    [
        ([7000215], 7000215, "paste the secret's Value, not its ID"),
        ([7000222], 7000222, "has expired"),
        ([700016], 700016, "not found in the tenant"),
        ([90002], 90002, "tenant was not found"),
        ([500011], 500011, "not provisioned"),
        ([70011], 70011, "scope is not valid"),
        ([1002012], 1002012, "scope is not valid"),
        ([650052], 650052, "has not enabled the service"),
        ([12345, 700016], 700016, "client ID"),
        ([12345], 12345, "login.microsoftonline.com/error?code=12345"),
        ([], None, ""),
    ],
)
def test_aadsts_codes_map_to_plain_advice(codes, code, words):
    assert aadsts_advice(codes)[0] == code
    assert words in aadsts_advice(codes)[1]


def test_advice_is_chosen_by_error_code_never_by_description_text():
    body = {
        "error": "invalid_client",
        "error_codes": [700016],
        "error_description": "AADSTS7000215: Invalid client secret",
    }
    failure = auth.token_failure(_plain_settings(), body)
    assert failure.code == 700016


def test_redact_removes_every_secret():
    assert redact("token abc123 and s3cret!", "abc123", "s3cret!", "") == "token *** and ***"


def _plain_settings():
    return ConnectionSettings(
        flavour=presets.MDE,
        host="api.security.microsoft.com",
        client_id="0b6f1d2e-0000-4000-8000-00000000bbbb",
        tenant_id="contoso.onmicrosoft.com",
        auth_url="https://login.microsoftonline.com",
        client_secret="a-secret-value",
    )


def test_no_secret_or_token_in_messages_reprs_or_logs(simulator, auth_proxy, caplog):
    caplog.set_level(logging.DEBUG)
    PROCESS.clear()
    good = settings_for(simulator)
    wrong_secret = "wrong-secret-Value~0123456789"
    proxy_password = "proxy-password-never-shown"
    wrong = settings_for(simulator, client_secret=wrong_secret)
    proxied = settings_for(simulator, proxy=proxy_for(auth_proxy, AUTH_USER, proxy_password))
    token = auth.acquire_token(good)
    siem_token = auth.acquire_token(settings_for(simulator, presets.SIEM))

    texts = [repr(good), repr(wrong), repr(proxied), repr(token), repr(siem_token)]
    for settings in (wrong, proxied, settings_for(simulator, presets.SIEM, client_secret=wrong_secret)):
        with pytest.raises(DefenderError) as failure:
            auth.acquire_token(settings, fresh=True)
        texts += [str(failure.value), repr(failure.value)]
    for settings in (good, wrong, proxied):
        texts += [step.message for step in connectivity.run_test(settings).steps]

    class RefusedTokens:
        def token(self):
            return token.access_token + "x"

        def drop(self):
            pass

    api = ApiClient(good, RefusedTokens())
    with pytest.raises(DefenderError) as failure:
        api.get_json(api.url("/api/alerts"))
    texts += [str(failure.value), repr(failure.value)]
    since = datetime.now(UTC) - timedelta(days=31)
    found = alerts.alerts_for_actor(good, ["ws-fin-07"], since)
    texts += [found.message, repr(found.alerts[0])]

    everything = "\n".join(texts) + "\n" + caplog.text
    for secret in (
        simulator.app.client_secret,
        wrong_secret,
        proxy_password,
        token.access_token,
        token.access_token.split(".")[2],
        siem_token.access_token,
    ):
        assert secret not in everything
    assert "Bearer " not in caplog.text and "Authorization" not in caplog.text
