"""Site-wide response and session rules: pages are never cached, and a session ends after a time without use."""

from django.utils import timezone

LAST_SEEN_KEY = "last_seen"
# The session's expiry is pushed forward at most this often, so a page that polls does not write on every request.
REFRESH_EVERY_SECONDS = 60


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every response that sets no caching of its own.

    Every page shows integrations, alerts, node tokens or who is signed in, and the CSV export is alert data: none of
    it may stay in a browser's or a proxy's cache after logout. Static files are served before middleware runs.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response


class SlidingSessionMiddleware:
    """Keep a signed-in session alive while it is used: SESSION_IDLE_TIMEOUT counts from the last request.

    The session store expires a session SESSION_COOKIE_AGE (= SESSION_IDLE_TIMEOUT) after it was last saved, so
    saving it is what slides the timeout; it is saved when the last refresh is a minute old or more.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = timezone.now().timestamp()
            last_seen = request.session.get(LAST_SEEN_KEY, 0)
            if not isinstance(last_seen, int | float) or now - last_seen >= REFRESH_EVERY_SECONDS:
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
