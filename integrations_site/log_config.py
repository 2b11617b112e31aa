"""Logging for the site and for a remote node's agent: plain console lines, with secrets and tokens masked.

Our own code never logs a secret, but libraries log what passes through them: msal logs a token response that is not
JSON whole (access token included, at ERROR), urllib3 logs each request line with its query at DEBUG, and Django logs
a failing request with a traceback whose messages can quote anything. So every handler configured here carries
RedactSecrets, Django's own default handlers are replaced by these, and a record is masked before any handler
formats it: its message, its traceback and its stack.
"""

import logging
import re

MASK = "***"
_SECRET_NAMES = r"client_secret|client_assertion|access_token|refresh_token|id_token|password"
# (pattern, replacement), applied in order. Each runs in linear time, whatever the text.
_PATTERNS = [
    # "access_token": "…" and 'client_secret': '…' (JSON, and Python reprs of dicts)
    (
        re.compile(rf"""(?i)(["'])({_SECRET_NAMES})\1(\s*:\s*)(["'])(?:\\.|(?!\4)[^\\])*\4"""),
        rf"\1\2\1\3\4{MASK}\4",
    ),
    # client_secret=… in a form body or a query string
    (re.compile(rf"""(?i)\b({_SECRET_NAMES})=[^&\s"'<>]+"""), rf"\1={MASK}"),
    # Authorization: Basic … / 'Authorization': 'Bearer …' / Proxy-Authorization=…
    (re.compile(r"""(?i)\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)[^"'\r\n,;}]+"""), rf"\1\2{MASK}"),
    # Bearer … anywhere else
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/-]+=*"), rf"\1\2{MASK}"),
    # A JWT (header.payload[.signature]): both start with eyJ, base64url of '{"'
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"), MASK),
    # The password in a URL (a proxy's, typically): scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), rf"\1{MASK}@"),
]


def redact(text: str) -> str:
    """The text with bearer tokens, JWTs, client secrets and assertions, token values and Authorization headers
    masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Masks secrets in a record before any handler formats it; never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            # A malformed call: the handler would print its arguments while reporting the error.
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def logging_config(level: str) -> dict:
    """Console logging at ``level``, every handler masking secrets. urllib3 and msal stay at WARNING: their DEBUG
    lines are noise (and carry request URLs) unless someone is debugging them."""
    redacting = ["redact_secrets"]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact_secrets": {"()": RedactSecrets}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "django.server": {
                "()": "django.utils.log.ServerFormatter",
                "format": "[{server_time}] {message}",
                "style": "{",
            },
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": redacting},
            "django.server": {"class": "logging.StreamHandler", "formatter": "django.server", "filters": redacting},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's defaults give "django" handlers of their own (console when DEBUG, mail_admins, which sends
            # nothing without ADMINS); its records go to the root's handler instead.
            "django": {"handlers": [], "level": "INFO", "propagate": True},
            "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
            "urllib3": {"level": "WARNING"},
            "msal": {"level": "WARNING"},
            # django-axes writes several INFO lines per login; the console logs each failure itself (defender.logins).
            "axes": {"level": "WARNING"},
        },
    }
