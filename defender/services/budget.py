"""One call budget per app, tenant and API, shared by every worker: every Defender, Graph and SIEM call takes a slot
first (token requests to Entra ID are not counted: they have limits of their own).

Microsoft counts calls per app registration and tenant: the Defender for Endpoint API allows 100 calls a minute and
1,500 an hour; Graph's /security alerts 150 requests a minute per app per tenant (no hourly figure documented); the
SIEM API is treated as the Defender API. Two sliding windows (the last minute, the last hour) are kept per budget.

Where the count lives (``configure``): Redis when ``CALL_BUDGET_REDIS_URL`` is set or the Celery broker is Redis, so
that every worker on every machine shares one count (one Lua script checks and takes atomically, on Redis's own
clock, so the hosts' clocks never matter); otherwise in this process (the embedded default runs one worker machine).

A 429 with Retry-After pauses the budget for everyone until then. Interactive work goes first: work marked with
``background()`` (scheduled health checks, sweeps) may use only 80 % of each window and takes no slot while an
interactive caller waits. A caller that finds the budget spent waits up to ``wait_at_most()`` seconds (60), then
fails with BudgetSpent, which names the budget and when it frees.

A budget is keyed by a SHA-256 of the client ID, tenant ID and API: never by a secret, and nothing in Redis names
the tenant in clear.
"""

import contextlib
import contextvars
import hashlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from defender import presets
from defender.services.connection import ConnectionSettings
from defender.services.errors import DefenderError, Throttled

MINUTE = 60.0
HOUR = 3600.0
# Background work may use this share of each window; the rest is kept for a person pressing a button.
BACKGROUND_SHARE = 0.8
# How long a caller waits for a slot unless configured otherwise.
DEFAULT_WAIT_SECONDS = 60.0
# A waiting interactive caller re-asks at least this often; its mark expires soon after, should its process die.
POLL_SECONDS = 0.25
WAITER_GRACE = 5.0


@dataclass(frozen=True)
class Limits:
    per_minute: int
    per_hour: int | None  # None: no hourly limit documented


# Microsoft's documented limits per app and tenant (see the module's docstring).
DEFAULT_LIMITS: dict[str, Limits] = {
    presets.MDE: Limits(100, 1500),
    presets.GRAPH: Limits(150, None),
    presets.SIEM: Limits(100, 1500),
}
# Advanced hunting has quotas of its own, counted per tenant whatever the app or API that runs the query: 45 calls
# a minute and 1,500 an hour (Defender for Endpoint's advanced hunting API; Defender XDR's, which Graph's
# runHuntingQuery fronts, documents "at least 45 calls per minute per tenant"). Its calls take from this budget only.
HUNTING = "hunting"
HUNTING_LIMITS = Limits(45, 1500)
API_LABELS: dict[str, str] = {
    presets.MDE: "Defender API",
    presets.GRAPH: "Microsoft Graph",
    presets.SIEM: "SIEM API",
    HUNTING: "Advanced hunting",
}


def budget_key(client_id: str, tenant_id: str, api: str) -> str:
    """The budget's name: a digest of who calls which API where (IDs compared as Microsoft does, case-blind)."""
    text = "\n".join((client_id.strip().lower(), tenant_id.strip().lower(), str(api)))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Budget:
    key: str
    api: str  # an ApiFlavour value
    per_minute: int
    per_hour: int | None
    name: str = ""  # the integration's, for messages

    @property
    def label(self) -> str:
        return API_LABELS.get(self.api, self.api)

    def limits(self, background: bool) -> tuple[int, int]:
        """(per minute, per hour) this caller may use; 0 for no hourly limit."""
        minute, hour = self.per_minute, self.per_hour or 0
        if background:
            minute = max(1, int(minute * BACKGROUND_SHARE))
            hour = max(1, int(hour * BACKGROUND_SHARE)) if hour else 0
        return minute, hour


def budget_for(settings: ConnectionSettings) -> Budget:
    """The budget this integration's calls take from: its own limits when set (the smallest of the integrations that
    share the app and tenant, as the site computes them), else Microsoft's."""
    default = DEFAULT_LIMITS[settings.flavour]
    return Budget(
        key=budget_key(settings.client_id, settings.tenant_id, settings.flavour),
        api=str(settings.flavour),
        per_minute=settings.calls_per_minute or default.per_minute,
        per_hour=settings.calls_per_hour or default.per_hour,
        name=settings.name,
    )


def hunting_budget_key(tenant_id: str) -> str:
    """The tenant's advanced-hunting budget: one for every app of the tenant."""
    return budget_key("", tenant_id, HUNTING)


def hunting_limits(calls_per_minute: int | None, calls_per_hour: int | None) -> Limits:
    """Advanced hunting's limits, within an integration's own when they are lower (an app shared with another tool
    keeps its share)."""
    minute, hour = HUNTING_LIMITS.per_minute, HUNTING_LIMITS.per_hour or 0
    return Limits(min(calls_per_minute or minute, minute), min(calls_per_hour or hour, hour) or None)


def hunting_budget_for(settings: ConnectionSettings) -> Budget:
    """The budget an advanced-hunting query takes from: the tenant's."""
    limits = hunting_limits(settings.calls_per_minute, settings.calls_per_hour)
    return Budget(hunting_budget_key(settings.tenant_id), HUNTING, limits.per_minute, limits.per_hour, settings.name)


class BudgetSpent(Throttled):
    """No slot came within the wait: the message says which budget and when it frees."""


class BudgetUnavailable(DefenderError):
    """The shared count could not be asked (Redis down): no call is made rather than one beyond the budget."""


@dataclass(frozen=True)
class Answer:
    """The backend's answer to one ask: taken, or why not and (when known) in how many seconds it frees."""

    taken: bool
    reason: str = ""  # "minute", "hour", "paused" or "yield"
    wait: float = 0.0
    now: float = 0.0  # the backend's clock, seconds since the epoch


@dataclass(frozen=True)
class Usage:
    minute: int
    hour: int
    paused_until: float | None  # seconds since the epoch, on the backend's clock


class Backend(Protocol):
    shared: bool  # counted for every process (Redis), or only this one

    def ask(self, budget: Budget, background: bool, waiter: str) -> Answer: ...

    def leave(self, budget: Budget, waiter: str) -> None: ...

    def pause(self, budget: Budget, seconds: float) -> None: ...

    def usage(self, key: str) -> Usage: ...


class _Count:
    def __init__(self) -> None:
        self.calls: deque[float] = deque()
        self.paused_until = 0.0
        self.waiters: dict[str, float] = {}


class InProcess:
    """The count in this process: a lock around each budget's call times."""

    shared = False

    def __init__(self, clock: Any = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, _Count] = {}

    def _count(self, key: str, now: float) -> _Count:
        count = self._counts.setdefault(key, _Count())
        while count.calls and count.calls[0] <= now - HOUR:
            count.calls.popleft()
        count.waiters = {waiter: until for waiter, until in count.waiters.items() if until > now}
        return count

    def ask(self, budget: Budget, background: bool, waiter: str) -> Answer:
        with self._lock:
            now = self.clock()
            count = self._count(budget.key, now)
            answer = _decide(budget, background, now, list(count.calls), count.paused_until, bool(count.waiters))
            if answer.taken:
                count.calls.append(now)
                count.waiters.pop(waiter, None)
            elif not background:
                count.waiters[waiter] = now + min(answer.wait, MINUTE) + WAITER_GRACE
            return answer

    def leave(self, budget: Budget, waiter: str) -> None:
        with self._lock:
            count = self._counts.get(budget.key)
            if count is not None:
                count.waiters.pop(waiter, None)

    def pause(self, budget: Budget, seconds: float) -> None:
        with self._lock:
            now = self.clock()
            count = self._count(budget.key, now)
            count.paused_until = max(count.paused_until, now + seconds)

    def usage(self, key: str) -> Usage:
        with self._lock:
            now = self.clock()
            count = self._count(key, now)
            minute = sum(1 for moment in count.calls if moment > now - MINUTE)
            paused = count.paused_until if count.paused_until > now else None
            return Usage(minute, len(count.calls), paused)


def _decide(
    budget: Budget, background: bool, now: float, calls: list[float], paused_until: float, waiting: bool
) -> Answer:
    """The rule, for the in-process count (the Redis script is the same rule in Lua): paused, yielding, or a window
    full (then it frees when the oldest call that must leave the window does)."""
    if paused_until > now:
        return Answer(False, "paused", paused_until - now, now)
    if background and waiting:
        return Answer(False, "yield", POLL_SECONDS, now)
    per_minute, per_hour = budget.limits(background)
    in_minute = [moment for moment in calls if moment > now - MINUTE]
    if len(in_minute) >= per_minute:
        return Answer(False, "minute", in_minute[len(in_minute) - per_minute] + MINUTE - now, now)
    if per_hour and len(calls) >= per_hour:
        return Answer(False, "hour", calls[len(calls) - per_hour] + HOUR - now, now)
    return Answer(True, now=now)


# KEYS: the call times (a sorted set), the pause (seconds since the epoch), the interactive waiters (a sorted set
# scored by when each mark expires), a sequence making each call's member unique.
# ARGV: per minute, per hour (0: none), background (1/0), waiter id, the grace of a waiter's mark.
_ASK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_minute, per_hour = tonumber(ARGV[1]), tonumber(ARGV[2])
local background, waiter, grace = ARGV[3] == '1', ARGV[4], tonumber(ARGV[5])
local function refused(reason, wait)
  if not background then
    redis.call('ZADD', KEYS[3], now + math.min(wait, 60) + grace, waiter)
    redis.call('EXPIRE', KEYS[3], 3700)
  end
  return {0, reason, tostring(wait), tostring(now)}
end
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return refused('paused', paused - now) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if background and redis.call('ZCARD', KEYS[3]) > 0 then
  return {0, 'yield', ARGV[6], tostring(now)}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 3600)
local in_minute = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60), '+inf')
if in_minute >= per_minute then
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (now - 60), '+inf', 'WITHSCORES', 'LIMIT',
    in_minute - per_minute, 1)
  return refused('minute', tonumber(oldest[2]) + 60 - now)
end
if per_hour > 0 then
  local in_hour = redis.call('ZCARD', KEYS[1])
  if in_hour >= per_hour then
    local oldest = redis.call('ZRANGE', KEYS[1], in_hour - per_hour, in_hour - per_hour, 'WITHSCORES')
    return refused('hour', tonumber(oldest[2]) + 3600 - now)
  end
end
local member = string.format('%.6f', now) .. ':' .. redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], now, member)
redis.call('EXPIRE', KEYS[1], 3700)
redis.call('EXPIRE', KEYS[4], 3700)
redis.call('ZREM', KEYS[3], waiter)
return {1, '', '0', tostring(now)}
"""

# KEYS: the pause. ARGV: seconds. The later of the pause in place and now + seconds, on Redis's clock.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > paused then
  redis.call('SET', KEYS[1], string.format('%.6f', until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return tostring(math.max(until_, paused))
"""

# KEYS: the call times, the pause. Answers (calls in the last minute, in the last hour, paused until or '').
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local minute = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 60), '+inf')
local hour = redis.call('ZCOUNT', KEYS[1], '(' .. (now - 3600), '+inf')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > now then return {minute, hour, tostring(paused)} end
return {minute, hour, ''}
"""

PREFIX = "call-budget:"


def _text(value: object) -> str:
    """A script's answer as text (redis-py hands back bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _keys(key: str) -> list[str]:
    base = f"{PREFIX}{key}:"
    return [base + "calls", base + "paused-until", base + "waiting", base + "seq"]


class InRedis:
    """The count in Redis, shared by every process that uses the same Redis database."""

    shared = True

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        import redis  # only where Redis is used: a remote node's agent may run without it

        self.url = url
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._ask = self._client.register_script(_ASK)
        self._pause = self._client.register_script(_PAUSE)
        self._usage = self._client.register_script(_USAGE)
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def _run(self, what: str, call: Any) -> Any:
        try:
            return call()
        except self._errors as error:
            raise BudgetUnavailable(
                f"The call budget could not be {what}: Redis did not answer ({type(error).__name__}), so no call was "
                "made.",
                "Check that Redis is running and CALL_BUDGET_REDIS_URL (or CELERY_BROKER_URL) points at it.",
            ) from None

    def ask(self, budget: Budget, background: bool, waiter: str) -> Answer:
        per_minute, per_hour = budget.limits(background)
        args: list[str | int | float] = [per_minute, per_hour, int(background), waiter, WAITER_GRACE, POLL_SECONDS]
        taken, reason, wait, now = self._run("asked", lambda: self._ask(keys=_keys(budget.key), args=args))
        return Answer(bool(int(taken)), _text(reason), float(_text(wait)), float(_text(now)))

    def leave(self, budget: Budget, waiter: str) -> None:
        self._run("updated", lambda: self._client.zrem(_keys(budget.key)[2], waiter))

    def pause(self, budget: Budget, seconds: float) -> None:
        self._run("paused", lambda: self._pause(keys=_keys(budget.key)[1:2], args=[seconds]))

    def usage(self, key: str) -> Usage:
        minute, hour, paused = self._run("read", lambda: self._usage(keys=_keys(key)[:2]))
        paused = _text(paused)
        return Usage(int(minute), int(hour), float(paused) if paused else None)

    def clear(self) -> None:
        """Forget every budget in this Redis database (for tests)."""
        for name in self._client.scan_iter(match=f"{PREFIX}*"):
            self._client.delete(name)


@dataclass
class _Config:
    backend: Backend = field(default_factory=InProcess)
    wait_seconds: float = DEFAULT_WAIT_SECONDS


_CONFIG = _Config()
_BACKGROUND: contextvars.ContextVar[bool] = contextvars.ContextVar("call_budget_background", default=False)


def configure(redis_url: str = "", broker_url: str = "", wait_seconds: float = DEFAULT_WAIT_SECONDS) -> Backend:
    """Choose where budgets are counted: ``redis_url``, else the broker's when it is Redis, else this process."""
    url = redis_url or (broker_url if broker_url.startswith(("redis://", "rediss://")) else "")
    return use(InRedis(url) if url else InProcess(), wait_seconds)


def use(backend: Backend, wait_seconds: float | None = None) -> Backend:
    _CONFIG.backend = backend
    if wait_seconds is not None:
        _CONFIG.wait_seconds = wait_seconds
    return backend


def backend() -> Backend:
    return _CONFIG.backend


def wait_at_most() -> float:
    return _CONFIG.wait_seconds


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Calls made inside are background work (a scheduled health check, a sweep): they keep to 80 % of each window
    and let a waiting interactive caller go first."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


def in_background() -> bool:
    return _BACKGROUND.get()


def _at(moment: float) -> str:
    return f"{datetime.fromtimestamp(moment, UTC):%H:%M:%S} UTC"


def _calls(count: int) -> str:
    return f"{count:,} call" if count == 1 else f"{count:,} calls"


def _spent(budget: Budget, answer: Answer) -> BudgetSpent:
    frees = answer.now + answer.wait
    whose = f"The {budget.label} call budget of {budget.name or 'this integration'} (this app and tenant)"
    if answer.reason == "paused":
        message = f"{whose} is paused until {_at(frees)}: the API answered 429 Too Many Requests."
    elif answer.reason == "yield":
        message = f"{whose} is in use by interactive work; this background call gave way."
        frees = answer.now + MINUTE
    elif answer.reason == "hour":
        message = f"{whose} of {_calls(budget.per_hour or 0)} an hour is spent; it frees at {_at(frees)}."
    else:
        message = f"{whose} of {_calls(budget.per_minute)} a minute is spent; it frees at {_at(frees)}."
    return BudgetSpent(
        message,
        "Try again then, or lower what runs on a schedule; the limits are set in the integration's Advanced options.",
        code=429,
        retry_at=datetime.fromtimestamp(frees, UTC),
    )


def take(budget: Budget, sleep: Any = time.sleep) -> None:
    """One slot of the budget, waiting for it up to ``wait_at_most()`` seconds; raises BudgetSpent when it does not
    free in time (at once, when the backend says it frees later than that)."""
    current, is_background = _CONFIG.backend, in_background()
    waiter = uuid.uuid4().hex
    deadline = time.monotonic() + _CONFIG.wait_seconds
    try:
        while True:
            answer = current.ask(budget, is_background, waiter)
            if answer.taken:
                return
            left = deadline - time.monotonic()
            if answer.wait > left or left <= 0:
                raise _spent(budget, answer)
            sleep(min(answer.wait, left) if answer.reason != "yield" else min(POLL_SECONDS, left))
    except BaseException:
        if not is_background:
            with contextlib.suppress(DefenderError):
                current.leave(budget, waiter)
        raise


def pause(budget: Budget, seconds: float) -> None:
    """The API said to wait (429 with Retry-After): every caller of this budget waits until then."""
    _CONFIG.backend.pause(budget, max(0.0, seconds))


def usage(key: str) -> Usage:
    return _CONFIG.backend.usage(key)


def clear() -> None:
    """A fresh count where one is kept (tests)."""
    current = _CONFIG.backend
    if isinstance(current, InRedis):
        current.clear()
    else:
        use(InProcess())


__all__ = [
    "Budget",
    "BudgetSpent",
    "BudgetUnavailable",
    "DEFAULT_LIMITS",
    "background",
    "budget_for",
    "hunting_budget_for",
    "budget_key",
    "configure",
    "pause",
    "take",
    "usage",
    "wait_at_most",
]
