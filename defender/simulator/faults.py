"""Fault switches: the failures the real services produce, on demand.

A run starts with the faults given to the Simulator (or the run_simulator flags); `set()` changes them while it runs
(in-process, or over HTTP at /_simulator/faults) and `clear()` goes back to the run's own settings. Each switch
applies to API calls by default; `applies_to="token"` or `"all"` aims it at the token endpoints too.

`hostile_alerts` serves alerts no documented API sends, as a broken or hostile server (or a proxy rewriting answers)
would. "title=object,computerDnsName=list; id=missing" gives the first alert of every alert listing an object for a
title and a list for a computer name, and the second no ID: one ";"-separated part per alert, in listing order,
counting only the alerts of the machine `hostile_alerts_on` when it is set. A field may be a path into the alert
("evidence.0.deviceDnsName"); the field "alert" replaces the whole alert. The kinds are the keys of HOSTILE_VALUES.
"""

import copy
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

MISSING = object()
WHOLE_ALERT = "alert"


def _nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUES = {
    "object": {"text": "an object where text belongs"},
    "list": ["a list", "where text belongs"],
    "number": 42,
    "boolean": True,
    "null": None,
    "null-text": "null",
    "missing": MISSING,
    "empty": "",
    "huge": "H" * 1_000_000,
    "nul": "text with a NUL \x00 inside",
    "surrogate": "text with a lone surrogate \ud800 inside",
    "deep": _nested(500),
    "not-a-time": "yesterday",
    "overflowing-time": "0001-01-01T00:00:00+01:00",
}

DEFAULTS = {
    # 429 with Retry-After on every Nth call (counted from the last set/clear) ...
    "throttle_every": 0,
    # ... or once more than this many calls arrive within a minute, like the real 100 calls/minute budget.
    "rate_limit_per_minute": 0,
    "retry_after": 1,
    # The next N calls fail with fail_status (500 or 503); a 503 may carry its own Retry-After.
    "fail_next": 0,
    "fail_status": 503,
    "fail_retry_after": 0,
    # Seconds to wait before answering.
    "delay": 0.0,
    # A truncated JSON body on page K of any paged answer (1 is the first page), or on the next N answers.
    "malformed_page": 0,
    "malformed_next": 0,
    # Leave out @odata.nextLink when the client paged with $top, as users report of the real API.
    "missing_next_link_with_top": False,
    # A 429 from the token endpoint as Entra ID sends it to the client credentials grant (MSAL's throttling page):
    # Retry-After (60 there; retry_after here) and a plain "Too Many Requests", no AADSTS body. Off: an AADSTS50196
    # JSON body, which Microsoft documents for user flows only.
    "token_429_without_body": True,
    # GET /api/machines/{id}/alerts refuses $expand=evidence with 400 ODataError (its page documents no OData
    # options, so a tenant may answer so).
    "refuse_expand_on_machine_alerts": False,
    # GET /api/alerts refuses $orderby with 400 ODataError, as a tenant whose API does not allow the option would.
    "refuse_orderby_on_alerts": False,
    # ... or takes it and ignores it, answering in its own order (by creation), as a proxy or an older API might.
    "ignore_orderby_on_alerts": False,
    # Alerts no documented API sends ("field=kind,...; ..." per alert, see above), on the machine named here if any.
    "hostile_alerts": "",
    "hostile_alerts_on": "",
    "applies_to": "api",
}
TARGETS = {"api": {"api"}, "token": {"token"}, "all": {"api", "token"}}


@dataclass(frozen=True)
class Decision:
    """What to do to one call: wait, answer with an error status, or corrupt the body."""

    delay: float = 0.0
    status: int = 0
    retry_after: int = 0
    malformed: bool = False


def _validated(changes):
    unknown = set(changes) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown fault switch: {', '.join(sorted(unknown))}")
    clean = {}
    for name, value in changes.items():
        default = DEFAULTS[name]
        if isinstance(default, bool):
            value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int | float):
            value = type(default)(value)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        clean[name] = value
    if clean.get("fail_status", 503) not in (500, 502, 503, 504):
        raise ValueError("fail_status must be 500, 502, 503 or 504")
    if clean.get("applies_to", "api") not in TARGETS:
        raise ValueError("applies_to must be api, token or all")
    hostile_spec(clean.get("hostile_alerts", ""))
    return clean


def hostile_spec(text):
    """One ((path, kind), ...) per alert from "field=kind,...; ...": what hostile_alert changes in each."""
    specs = []
    for alert_part in str(text).split(";") if str(text).strip() else ():
        spec = []
        for part in alert_part.split(","):
            field, _, kind = (piece.strip() for piece in part.partition("="))
            if not field or kind not in HOSTILE_VALUES:
                raise ValueError(f"hostile_alerts takes field=kind pairs, kind one of {', '.join(HOSTILE_VALUES)}")
            spec.append((tuple(field.split(".")), kind))
        specs.append(tuple(spec))
    return tuple(specs)


def _copy(value):
    # Through JSON, not copy.deepcopy: "deep" nests further than deepcopy's recursion goes.
    return json.loads(json.dumps(value))


def hostile_alert(alert, spec):
    """A copy of one alert with the fields of ``spec`` replaced; a path that does not exist in it is skipped."""
    alert = copy.deepcopy(alert)
    for path, kind in spec:
        value = HOSTILE_VALUES[kind]
        if path == (WHOLE_ALERT,):
            alert = None if value is MISSING else _copy(value)
            continue
        container = alert
        try:
            for step in path[:-1]:
                container = container[int(step)] if isinstance(container, list) else container[step]
        except (KeyError, IndexError, ValueError, TypeError):
            continue
        last = int(path[-1]) if isinstance(container, list) and path[-1].isdigit() else path[-1]
        if value is MISSING:
            if isinstance(container, dict):
                container.pop(last, None)
        elif isinstance(container, dict | list):
            try:
                container[last] = _copy(value)
            except (IndexError, TypeError):
                continue
    return alert


class Faults:
    def __init__(self, **run_faults):
        self._lock = threading.Lock()
        self._run = {**DEFAULTS, **_validated(run_faults)}
        self._active = dict(self._run)
        self._calls = 0
        self._recent = deque()

    def set(self, **changes):
        """Change some switches; the others keep their current values."""
        changes = _validated(changes)
        with self._lock:
            self._active.update(changes)
            self._calls = 0
            self._recent.clear()

    def clear(self):
        """Back to the faults the run started with (none, unless given to the Simulator or the command)."""
        with self._lock:
            self._active = dict(self._run)
            self._calls = 0
            self._recent.clear()

    def snapshot(self):
        with self._lock:
            return dict(self._active)

    def __getattr__(self, name):
        if name in DEFAULTS:
            return self.snapshot()[name]
        raise AttributeError(name)

    def decide(self, kind):
        """The fault for one call of this kind ("api" or "token"); counting happens here, once per call."""
        with self._lock:
            active = self._active
            if kind not in TARGETS[active["applies_to"]]:
                return Decision()
            self._calls += 1
            delay = active["delay"]
            now = time.monotonic()
            if active["rate_limit_per_minute"]:
                while self._recent and now - self._recent[0] >= 60:
                    self._recent.popleft()
                if len(self._recent) >= active["rate_limit_per_minute"]:
                    wait = max(1, math.ceil(60 - (now - self._recent[0])))
                    return Decision(delay, 429, wait)
                self._recent.append(now)
            if active["throttle_every"] and self._calls % active["throttle_every"] == 0:
                return Decision(delay, 429, max(1, active["retry_after"]))
            if active["fail_next"]:
                active["fail_next"] -= 1
                retry_after = active["fail_retry_after"] if active["fail_status"] == 503 else 0
                return Decision(delay, active["fail_status"], retry_after)
            malformed = False
            if active["malformed_next"]:
                active["malformed_next"] -= 1
                malformed = True
            return Decision(delay, 0, 0, malformed)

    def malformed_page(self, page_number):
        with self._lock:
            return bool(page_number) and self._active["malformed_page"] == page_number

    def drop_next_link(self):
        with self._lock:
            return self._active["missing_next_link_with_top"]

    def token_429_without_body(self):
        with self._lock:
            return self._active["token_429_without_body"]

    def refuse_expand(self):
        with self._lock:
            return self._active["refuse_expand_on_machine_alerts"]

    def refuse_orderby(self):
        with self._lock:
            return self._active["refuse_orderby_on_alerts"]

    def ignore_orderby(self):
        with self._lock:
            return self._active["ignore_orderby_on_alerts"]

    def hostile_alerts(self):
        """(one spec per alert, machine name or "") while hostile alerts are switched on, else None."""
        with self._lock:
            specs = hostile_spec(self._active["hostile_alerts"])
            return (specs, self._active["hostile_alerts_on"]) if specs else None
