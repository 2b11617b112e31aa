"""The page a signed-in user sees when they may not do something (a Viewer is read-only), logged once."""

import logging

from django.http import HttpResponseForbidden
from django.template import loader

logger = logging.getLogger(__name__)


def permission_denied(request, exception):
    """Django's handler403: a styled page that says why, and one log line without a traceback.

    A refusal is expected behaviour, not a fault: Django would log it with the exception's traceback, once per
    logging handler. Marking the response as logged keeps Django's request log from writing it again.
    """
    user = request.user.get_username() if request.user.is_authenticated else "an anonymous visitor"
    # Escaped as Django escapes its own request log: a path with a line feed must not forge a log line.
    path = request.path.encode("unicode_escape").decode("ascii")
    logger.warning("Refused %s %s to %r: no permission", request.method, path, user)
    page = loader.render_to_string("403.html", {"reason": str(exception or "")}, request)
    response = HttpResponseForbidden(page)
    response._has_been_logged = True  # read by django.utils.log.log_response
    return response
