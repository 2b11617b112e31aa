"""The webhook notification: a JSON POST through the one HTTP seam, to a real receiver on a real socket; its URL (the
webhook's credential) never in an error."""

import logging

import pytest

from defender.services import notify
from tests.webhook_server import SECRET_PATH, WebhookServer

NOTICE = notify.Notice(
    text="Defender EU is down: Token failed (3 Tests in a row). AADSTS7000215: the client secret is wrong.",
    integration="Defender EU",
    state="down",
    failed_step="Token",
    advice="AADSTS7000215: the client secret is wrong.",
    url="https://director.example.com/settings/integrations/1/",
)


@pytest.fixture
def webhook():
    with WebhookServer() as server:
        yield server


def test_the_webhook_gets_one_json_post_with_the_text_slack_and_teams_show(webhook):
    notify.post_webhook(webhook.url, NOTICE)
    [(path, headers, body)] = webhook.received
    assert path == SECRET_PATH
    assert headers["Content-Type"] == "application/json"
    assert body == {
        "text": NOTICE.text,
        "integration": "Defender EU",
        "state": "down",
        "failed_step": "Token",
        "advice": "AADSTS7000215: the client secret is wrong.",
        "url": "https://director.example.com/settings/integrations/1/",
    }


def test_the_webhook_url_is_not_logged_even_at_debug(webhook, caplog):
    with caplog.at_level(logging.DEBUG):
        notify.post_webhook(webhook.url, NOTICE)
    assert "POST 127.0.0.1" in caplog.text  # the transport's line names the host only
    assert SECRET_PATH not in caplog.text


def test_a_refusing_webhook_fails_with_its_status_and_never_its_url(webhook):
    webhook.status = 404
    with pytest.raises(notify.NotificationFailed) as failure:
        notify.post_webhook(webhook.url, NOTICE)
    assert "404" in str(failure.value)
    assert SECRET_PATH not in str(failure.value)
    assert webhook.url not in repr(failure.value)


def test_an_unreachable_webhook_fails_within_its_timeout_and_never_names_its_url(closed_port):
    url = f"http://127.0.0.1:{closed_port}{SECRET_PATH}"
    with pytest.raises(notify.NotificationFailed) as failure:
        notify.post_webhook(url, NOTICE, notify.WebhookReach(connect_timeout=1, read_timeout=1))
    assert SECRET_PATH not in str(failure.value)
    assert "127.0.0.1" in str(failure.value)  # the host is named, so that the failure can be acted on


def test_a_webhook_that_never_answers_is_given_up_on(silent_listener):
    url = f"http://{silent_listener.host}:{silent_listener.port}{SECRET_PATH}"
    with pytest.raises(notify.NotificationFailed) as failure:
        notify.post_webhook(url, NOTICE, notify.WebhookReach(connect_timeout=1, read_timeout=1))
    assert SECRET_PATH not in str(failure.value)


def test_a_url_that_cannot_be_parsed_fails_without_quoting_it():
    url = "http://[not-an-address" + SECRET_PATH
    with pytest.raises(notify.NotificationFailed) as failure:
        notify.post_webhook(url, NOTICE)
    assert SECRET_PATH not in str(failure.value)
