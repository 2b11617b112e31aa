"""Strict readers for settings that come from the environment.

Every setting can be given as ``NAME=value`` or as ``NAME_FILE=/path`` (the file's contents, stripped), so that
secrets can come from a secrets mount instead of the process environment. Malformed values stop the start-up with a
message naming the variable: a typo in ``DEBUG`` must not silently mean "on".
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE_SPELLINGS = {"true", "1", "yes", "on"}
FALSE_SPELLINGS = {"false", "0", "no", "off"}


def read(name, default=None, environ=None):
    """The raw value of ``name``, from ``name`` or the file named by ``name_FILE``; ``default`` when neither is set."""
    environ = os.environ if environ is None else environ
    file_variable = f"{name}_FILE"
    if name in environ and file_variable in environ:
        raise ImproperlyConfigured(f"Set either {name} or {file_variable}, not both.")
    if file_variable in environ:
        path = Path(environ[file_variable])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"{file_variable} points to {path}, which cannot be read: {exc.strerror}."
            ) from exc
    return environ.get(name, default)


def boolean(name, default, environ=None):
    """``true``/``false`` (also 1/0, yes/no, on/off, any case); anything else is refused."""
    value = read(name, None, environ)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in TRUE_SPELLINGS:
        return True
    if lowered in FALSE_SPELLINGS:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}.")


def string_list(name, default=(), environ=None):
    """A comma-separated list; blanks are dropped."""
    value = read(name, None, environ)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def integer(name, default, environ=None):
    value = read(name, None, environ)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from exc
