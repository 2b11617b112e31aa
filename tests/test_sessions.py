"""A session ends after SESSION_IDLE_TIMEOUT without a request, and each request renews it."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_the_idle_timeout_is_eight_hours_by_default():
    assert settings.SESSION_IDLE_TIMEOUT == 8 * 60 * 60
    assert settings.SESSION_COOKIE_AGE == settings.SESSION_IDLE_TIMEOUT


@pytest.fixture
def clock(monkeypatch):
    """Move the site's clock forward: sessions expire by timezone.now(), and the idle clock reads it too."""
    real_now = timezone.now
    offset = {"by": timedelta()}
    monkeypatch.setattr(timezone, "now", lambda: real_now() + offset["by"])

    def advance(**kwargs):
        offset["by"] += timedelta(**kwargs)

    return advance


def test_a_session_unused_for_longer_than_the_idle_timeout_is_logged_out(admin_client, clock):
    assert admin_client.get("/settings/integrations/").status_code == 200

    clock(seconds=settings.SESSION_IDLE_TIMEOUT + 1)
    response = admin_client.get("/settings/integrations/")

    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_session_in_use_stays_open_past_the_idle_timeout(admin_client, clock):
    """The timeout slides: it counts from the last request, not from the login."""
    for _ in range(3):
        clock(seconds=settings.SESSION_IDLE_TIMEOUT - 600)
        assert admin_client.get("/settings/integrations/").status_code == 200


def test_requests_close_together_do_not_write_the_session_each_time(admin_client):
    admin_client.get("/settings/integrations/")
    expiry = Session.objects.get().expire_date
    admin_client.get("/actors/")
    assert Session.objects.get().expire_date == expiry
