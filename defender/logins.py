"""Logins: who failed to log in and from where, lockouts, the "logged out" message, and the client's address.

django-axes counts the failures and locks (settings AXES_*); this module says so in the log, in words an
administrator can search for. A password never reaches the log: only the user name as typed and the address.
"""

import logging

from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from integrations_site.middleware import LAST_SEEN_KEY

logger = logging.getLogger(__name__)


def client_address(request: HttpRequest) -> str | None:
    """The address a login came from: the connection's, or the one the trusted reverse proxies saw.

    Each of the TRUSTED_PROXY_COUNT proxies appends the address it was reached from to X-Forwarded-For, so the
    client's is that many entries from the right; anything further left was written by the client and is ignored.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if entry.strip()]
    if hops and len(forwarded) >= hops:
        return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """The page shown instead of the login form while a user name is locked from this address (429)."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    context = {
        "username": username,
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "minutes": cool_off_minutes(),
    }
    return render(request, "registration/locked_out.html", context, status=429)


def cool_off_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def log_failed_login(sender, credentials, request=None, **kwargs):
    # Django hands over the credentials with the password already masked; only the user name is used here.
    username = credentials.get("username", "")
    address = client_address(request) if request is not None else None
    logger.warning("Failed login for user name %r from %s", username, address or "an unknown address")


def log_lockout(sender, request, username, ip_address, **kwargs):
    logger.warning(
        "User name %r is locked out from %s for %d minutes after %d failed logins",
        username,
        ip_address,
        cool_off_minutes(),
        settings.AXES_FAILURE_LIMIT,
    )


def start_idle_clock(sender, request, user, **kwargs):
    """A new session starts its idle clock at login, so the first page after it needs no extra session write."""
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN_KEY] = timezone.now().timestamp()


def say_logged_out(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "_messages"):
        messages.success(request, "You are logged out.")


def connect() -> None:
    user_login_failed.connect(log_failed_login, dispatch_uid="defender-log-failed-login")
    if apps.is_installed("axes"):  # not on a remote node's agent, which has no logins
        from axes.signals import user_locked_out

        user_locked_out.connect(log_lockout, dispatch_uid="defender-log-lockout")
    user_logged_in.connect(start_idle_clock, dispatch_uid="defender-start-idle-clock")
    user_logged_out.connect(say_logged_out, dispatch_uid="defender-say-logged-out")
