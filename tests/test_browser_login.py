import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_logging_in_shows_the_integrations_list_with_settings_and_actors_menus(page, live_server, log_in, admin_user):
    log_in(admin_user.username, PASSWORD)
    assert page.get_by_role("heading", name="Integrations").is_visible()
    page.get_by_role("button", name="Settings").click()
    assert page.get_by_role("link", name="Proxy Rules").is_visible()
    assert page.get_by_role("link", name="Actors").is_visible()
    assert page.get_by_text(admin_user.username).is_visible()


def test_a_wrong_password_keeps_the_user_on_the_login_page_with_a_message(page, live_server, admin_user):
    page.goto(f"{live_server.url}/settings/integrations/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill(admin_user.username)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    assert page.get_by_text("Please enter a correct username and password").is_visible()
    assert page.get_by_label("Username").input_value() == admin_user.username
