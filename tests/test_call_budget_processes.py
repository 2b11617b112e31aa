"""Two real worker-like processes (tests/budget_caller.py) sharing one call budget in Redis (database 6), calling the
simulator: what the simulator counted is the proof. No fixed sleep synchronises anything: each process says when it
is ready, starts its calls when a go file appears, and every wait has a generous bound."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from defender.remote.wire import settings_to_wire
from defender.services import budget
from tests.engine_processes import redis_or_skip
from tests.fixtures.connection import settings_for

ROOT = Path(__file__).resolve().parent.parent
# Database 6 of the local Redis, emptied by these tests; another can be named to run them beside a suite using 6.
REDIS_URL = os.environ.get("BUDGET_TEST_REDIS_URL", "redis://127.0.0.1:6379/6")
HANDSHAKE_TIMEOUT = 60.0


@pytest.fixture
def shared_redis():
    """Redis database 6, emptied before and after: the budget of these tests only."""
    client = redis_or_skip(REDIS_URL)
    yield client
    client.flushdb()


class Caller:
    """One budget_caller.py process: its orders, its events, its go file."""

    def __init__(self, folder: Path, name: str, settings, waits):
        self.events = folder / f"{name}.events"
        self.go = folder / f"{name}.go"
        orders = folder / f"{name}.json"
        orders.write_text(
            json.dumps(
                {
                    "settings": settings_to_wire(settings),
                    "redis_url": REDIS_URL,
                    "waits": waits,
                    "marker": MARKER,
                    "go": str(self.go),
                    "events": str(self.events),
                }
            )
        )
        orders.chmod(0o600)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "budget_caller.py"), str(orders)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def read(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines() if line.endswith("}")]

    def wait_for(self, kind: str) -> list[dict]:
        """The events once one of this kind is among them (or the process ended without it: a failure)."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while time.monotonic() < deadline:
            events = self.read()
            if any(event["event"] == kind for event in events):
                return events
            if self.process.poll() is not None:
                pytest.fail(f"the caller exited ({self.process.returncode}) before {kind!r}: {events}")
            time.sleep(0.02)
        pytest.fail(f"no {kind!r} from the caller within {HANDSHAKE_TIMEOUT:g} s: {self.read()}")

    def start(self) -> None:
        self.go.touch()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


# The alert ID the callers ask for, which marks their calls in the simulator's log.
MARKER = "da-budget-caller-0000"


@pytest.fixture
def callers(tmp_path):
    started: list[Caller] = []

    def start(name, settings, waits):
        caller = Caller(tmp_path, name, settings, waits)
        started.append(caller)
        return caller

    yield start
    for caller in started:
        caller.stop()


def api_calls(simulator):
    """The calls the callers made (they ask for an alert ID no other test uses): another test's call finishing late
    on the shared simulator is not theirs."""
    return [record for record in simulator.requests if record.kind == "api" and MARKER in unquote(record.query)]


def test_two_processes_with_a_budget_of_10_a_minute_never_make_more_than_10_calls_together(
    clean_simulator, shared_redis, callers
):
    settings = settings_for(clean_simulator, calls_per_minute=10)
    first = callers("first", settings, [0] * 8)
    second = callers("second", settings, [0] * 8)
    first.wait_for("ready")
    second.wait_for("ready")
    first.start()
    second.start()  # both go at once: 16 calls race for 10 slots
    events = first.wait_for("done") + second.wait_for("done")

    calls = api_calls(clean_simulator)
    assert len(calls) == 10
    assert all(call.status == 200 for call in calls)
    outcomes = [event["event"] for event in events if event["event"] not in ("ready", "done")]
    assert outcomes.count("ok") == 10
    assert outcomes.count("spent") == 6
    spent = next(event["message"] for event in events if event["event"] == "spent")
    assert "Defender API call budget of Simulator mde" in spent
    assert "10 calls a minute is spent; it frees at" in spent
    assert budget.InRedis(REDIS_URL).usage(budget.budget_for(settings).key).minute == 10


def test_a_429_seen_by_one_process_pauses_the_other_without_a_call(clean_simulator, shared_redis, callers):
    clean_simulator.faults.set(throttle_every=1, retry_after=600)
    settings = settings_for(clean_simulator, max_retries=0)
    throttled = callers("throttled", settings, [0])
    other = callers("other", settings, [0])
    throttled.wait_for("ready")
    other.wait_for("ready")
    throttled.start()
    events = throttled.wait_for("done")
    assert [event["event"] for event in events] == ["ready", "failed", "done"]
    assert events[1]["code"] == 429
    # The pause is in Redis, on its clock, before the other process makes its first call.
    paused_until = budget.InRedis(REDIS_URL).usage(budget.budget_for(settings).key).paused_until
    assert paused_until is not None and paused_until > events[1]["at"] + 500
    clean_simulator.faults.clear()

    other.start()
    events = other.wait_for("done")
    assert [event["event"] for event in events] == ["ready", "spent", "done"]
    assert "is paused until" in events[1]["message"]
    assert "429 Too Many Requests" in events[1]["message"]
    # The simulator saw only the throttled call: the other process asked Redis, not the API.
    assert [call.status for call in api_calls(clean_simulator)] == [429]


def test_after_a_429_the_other_process_calls_only_once_the_pause_is_over(clean_simulator, shared_redis, callers):
    clean_simulator.faults.set(throttle_every=1, retry_after=3)
    settings = settings_for(clean_simulator, max_retries=0)
    throttled = callers("throttled", settings, [0])
    other = callers("other", settings, [30])
    throttled.wait_for("ready")
    other.wait_for("ready")
    throttled.start()
    events = throttled.wait_for("done")
    assert [event["event"] for event in events] == ["ready", "failed", "done"]
    # Read by the throttled process right after its 429, on Redis's clock.
    paused_until = events[1]["paused_until"]
    clean_simulator.faults.clear()

    other.start()
    assert [event["event"] for event in other.wait_for("done")] == ["ready", "ok", "done"]
    calls = api_calls(clean_simulator)
    assert [call.status for call in calls] == [429, 200], calls
    first, second = calls
    # Order on one clock: the pause was recorded before the other process went, and its call reached the simulator
    # after the pause's end (the budget refused it until then, on Redis's clock, the host's own).
    assert paused_until is not None
    assert second.time >= paused_until
