"""Logins: a user name is locked from an address after a few failures, failures are logged without the password,
there is no password reset by email, and logging out says so."""

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.utils import timezone

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

CONSOLE_LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
WRONG = "wrong-password-typed-in-a-hurry"


def log_in(client, url, username, password, address="192.0.2.10"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def fail(client, url, username, times, address="192.0.2.10"):
    """Type a wrong password ``times`` times; the answer to the last one."""
    for _ in range(times):
        response = log_in(client, url, username, WRONG, address)
    return response


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    # Each wrong password is hashed as the right one would be; the default hasher makes that slow on purpose.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.parametrize("url", [CONSOLE_LOGIN, ADMIN_LOGIN])
def test_after_the_failure_limit_even_the_right_password_is_refused_with_a_clear_message(
    client, url, django_user_model
):
    user = django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True)
    before_the_limit = fail(client, url, user.username, settings.AXES_FAILURE_LIMIT - 1)
    assert before_the_limit.status_code == 200, "a wrong password before the limit shows the form again"
    at_the_limit = fail(client, url, user.username, 1)
    assert at_the_limit.status_code == 429

    response = log_in(client, url, user.username, PASSWORD)

    assert response.status_code == 429
    page = response.content.decode()
    assert "Logging in is paused" in page
    assert f"{settings.AXES_FAILURE_LIMIT} failed logins for <strong>alice</strong> from your address" in page
    assert "paused for 15 minutes" in page
    assert "_auth_user_id" not in client.session


def test_one_failure_short_of_the_limit_the_right_password_still_logs_in(client, admin_user):
    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT - 1)

    response = log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD)

    assert response.status_code == 302 and response["Location"] == "/settings/integrations/"


def test_a_successful_login_starts_the_count_again(client, admin_user):
    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT - 1)
    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 302
    client.logout()

    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT - 1)

    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 302


def test_a_lockout_holds_only_for_that_user_name_from_that_address(client, admin_user, viewer_user):
    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT)

    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 429
    # Someone failing from elsewhere cannot lock the administrator out of their own desk, nor other users.
    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD, address="198.51.100.7").status_code == 302
    client.logout()
    assert log_in(client, CONSOLE_LOGIN, viewer_user.username, PASSWORD).status_code == 302


def test_a_failure_on_the_admin_login_counts_towards_the_console_login(client, admin_user):
    fail(client, ADMIN_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT)

    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 429


def test_changing_the_browser_does_not_reset_the_count(client, admin_user):
    for number in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            CONSOLE_LOGIN,
            {"username": admin_user.username, "password": WRONG},
            REMOTE_ADDR="192.0.2.10",
            HTTP_USER_AGENT=f"browser {number}",
        )

    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 429


def test_after_the_cool_off_the_user_can_log_in_again(client, admin_user):
    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT)
    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 429

    # The failures are now as old as the cool-off.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 302


def test_the_cool_off_and_the_limit_are_settings(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = timedelta(minutes=1)
    fail(client, CONSOLE_LOGIN, admin_user.username, 2)

    response = log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD)

    assert response.status_code == 429
    assert "paused for 1 minute;" in response.content.decode()


def test_failed_logins_are_logged_with_the_user_name_and_address_but_never_the_password(client, admin_user, caplog):
    secret_attempt = "s3cret-typed-by-mistake-Zq9"
    with caplog.at_level(logging.INFO):
        for _ in range(settings.AXES_FAILURE_LIMIT):
            log_in(client, CONSOLE_LOGIN, admin_user.username, secret_attempt, address="203.0.113.5")

    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Failed login")]
    assert failures == [f"Failed login for user name '{admin_user.username}' from 203.0.113.5"] * 5
    assert any(
        f"'{admin_user.username}' is locked out from 203.0.113.5 for 15 minutes" in r.getMessage()
        for r in caplog.records
    )
    assert secret_attempt not in caplog.text
    stored = AccessAttempt.objects.get()
    assert secret_attempt not in stored.post_data and secret_attempt not in stored.get_data


def test_a_user_name_with_a_line_feed_cannot_forge_a_log_line(client, caplog):
    with caplog.at_level(logging.WARNING):
        log_in(client, CONSOLE_LOGIN, "nobody\nINFO Successful login for admin", WRONG)

    [failure] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Failed login")]
    assert "\n" not in failure


def test_behind_trusted_proxies_the_clients_address_is_the_one_they_saw(client, admin_user, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    for _ in range(settings.AXES_FAILURE_LIMIT):
        # The client may write anything on the left of X-Forwarded-For; the proxy appends what it saw.
        client.post(
            CONSOLE_LOGIN,
            {"username": admin_user.username, "password": WRONG},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.10",
        )

    assert AccessAttempt.objects.get().ip_address == "192.0.2.10"
    another_client = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}
    response = client.post(CONSOLE_LOGIN, {"username": admin_user.username, "password": PASSWORD}, **another_client)
    assert response.status_code == 302


def test_tests_start_with_no_lockout_state(client, admin_user):
    """The lockout lives in the database, which every test gets fresh: the failures above leave nothing here."""
    assert not AccessAttempt.objects.exists()
    assert log_in(client, CONSOLE_LOGIN, admin_user.username, PASSWORD).status_code == 302


def test_force_login_is_not_counted_or_refused(client, admin_user):
    fail(client, CONSOLE_LOGIN, admin_user.username, settings.AXES_FAILURE_LIMIT)
    client.force_login(admin_user)

    assert client.get("/settings/integrations/").status_code == 200


@pytest.mark.parametrize(
    "url", ["/accounts/password_reset/", "/accounts/password_reset/done/", "/accounts/reset/MQ/set-password/"]
)
def test_there_is_no_password_reset_by_email(client, url):
    assert client.get(url).status_code == 404
    assert client.post(url, {"email": "alice@example.com"}).status_code == 404


def test_the_login_page_says_an_administrator_sets_a_forgotten_password(client):
    page = client.get(CONSOLE_LOGIN).content.decode()
    assert "Forgot your password? An administrator sets a new one" in page
    assert "password_reset" not in page


def test_logging_out_says_so_on_the_login_page(admin_client):
    response = admin_client.post("/accounts/logout/", follow=True)

    assert response.redirect_chain[-1][0] == "/accounts/login/"
    assert "You are logged out." in response.content.decode()
