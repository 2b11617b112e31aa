"""Reading what other parties send: Defender's answers and remote nodes' bodies are well-formed only by luck.

Two kinds of help: reading a value (text that may be an object, a list, a number, missing, null or huge) and making
a value storable (PostgreSQL refuses NUL characters in text and in jsonb, and no database takes a lone UTF-16
surrogate, which JSON's \\ud800 escapes can carry). Reading is cheap enough for every alert of a 10,000-alert page;
the storable copies are made once, where a value is about to be stored or sent on.
"""

import math
import re
from datetime import UTC, datetime
from itertools import accumulate

# --- nesting ------------------------------------------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(code for code in range(256) if code not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(document: bytes) -> int:
    """How deeply a JSON document nests arrays and objects, found without parsing it (so without recursion).

    Escapes go first, then strings (which may hold brackets), then everything but brackets; each step is one pass
    of a C loop, and every regular expression here runs in linear time whatever the input.
    """
    bare = _STRING.sub(b"", _ESCAPE.sub(b"", document))
    return max(accumulate(map(_STEP.__getitem__, bare.translate(None, _NOT_BRACKETS))), default=0)


# --- reading values -----------------------------------------------------------------------------------------------

# JSON's way of writing "nothing" arrives as text too, from exporters that stringify a null.
NULL_TEXT = "null"


def text(value: object, limit: int) -> str:
    """The value as text of at most ``limit`` characters: a string as it is, a number written out, and "" for what
    has no text (missing, null, "null", an object, a list, true or false)."""
    if type(value) is str:
        return "" if value == NULL_TEXT else value[:limit]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)[:limit] if math.isfinite(value) else ""
    return ""


def text_list(value: object, limit: int, most: int) -> tuple[str, ...]:
    """At most ``most`` texts from a list (e.g. MITRE technique IDs), each cut to ``limit``; () for a non-list."""
    if type(value) is not list:
        return ()
    if len(value) <= most:
        for item in value:
            if type(item) is not str or len(item) > limit:
                break
        else:
            return tuple(value)  # the usual case, checked without building anything
    return tuple(item for item in (text(item, limit) for item in value[:most]) if item)


# The longest ISO 8601 time the APIs send (2026-05-01T12:00:00.1234567+00:00) with room to spare.
LONGEST_TIME = 40


def moment(value: object) -> datetime | None:
    """An aware datetime from ISO 8601 text (7-digit fractions and Z included; no zone means UTC), or None for
    anything else. Years at the ends of the calendar are refused: moving them to UTC would overflow."""
    if type(value) is str:
        if len(value) > LONGEST_TIME:
            return None
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif not isinstance(value, datetime):
        return None
    if not 1 < value.year < 9999:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def identifier(value: object, limit: int) -> str:
    """An ID to key a record by, or "" when there is none: an integer is written out, and text longer than the column
    is refused rather than cut (two cut IDs could name different records)."""
    if type(value) is str:
        value = value.strip()
    elif type(value) is int:
        value = str(value)
    else:
        return ""
    return value if 0 < len(value) <= limit and value != NULL_TEXT else ""


# --- making values storable ---------------------------------------------------------------------------------------

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# How deep and how long stored JSON may be: alerts nest five or six levels, and a command line is at most 32,767
# characters on Windows.
STORED_DEPTH = 16
STORED_TEXT = 32768
TOO_DEEP = "(nested too deeply; not kept)"


def storable_text(value: str) -> str:
    """The text without NUL characters and with each lone surrogate replaced, so any database takes it."""
    if _UNSTORABLE.search(value) is None:
        return value
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def storable_json(value: object, depth: int = STORED_DEPTH) -> object:
    """A copy of a decoded JSON value that any database stores: texts made storable and cut to STORED_TEXT, keys
    too, numbers that are not finite dropped to null, and anything nested deeper than ``depth`` replaced."""
    if isinstance(value, str):
        return storable_text(value[:STORED_TEXT])
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth <= 0:
        return TOO_DEEP
    if isinstance(value, dict):
        return {storable_text(str(key)[:STORED_TEXT]): storable_json(item, depth - 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(item, depth - 1) for item in value]
    return storable_text(str(value)[:STORED_TEXT])


_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def storable_document(document: str, value: object) -> bool:
    """Whether a decoded JSON document holds only storable text; ``document`` is its source, which is searched
    first so that the walk through ``value`` happens only when an escape could have made a NUL or a surrogate."""
    if _SUSPECT_ESCAPE.search(document) is None:
        return True
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True
