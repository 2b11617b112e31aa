"""How long the Test takes: against the simulator (target under 1 s), against a port that accepts but never answers,
and against a host whose SYNs go unanswered (both must end at the connect timeout, plus about a second).

A listener whose accept queue is full drops new SYNs, which is what a firewalled host does; it stays on loopback.
Run: .venv/bin/python benchmarks/test_duration.py [rounds]
"""

import contextlib
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integrations_site.settings")

from defender.services.connectivity import run_test  # noqa: E402
from defender.simulator import Simulator, silent_listener  # noqa: E402
from tests.fixtures.connection import settings_for  # noqa: E402

CONNECT_TIMEOUT = 5.0


@contextlib.contextmanager
def unanswered_port():
    """A port whose SYNs are dropped: a listener that never accepts, with its backlog already full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for sock in [*fillers, listener]:
            sock.close()


def timed(settings):
    started = time.monotonic()
    result = run_test(settings)
    elapsed = time.monotonic() - started
    failed = next((step.name for step in result.steps if step.outcome == "failed"), "none")
    return elapsed, failed


def main(rounds=10):
    with Simulator(seed=1) as simulator:
        passing = [timed(settings_for(simulator, connect_timeout=CONNECT_TIMEOUT)) for _ in range(rounds)]
        assert all(failed == "none" for _, failed in passing), passing
        with silent_listener() as listener:
            silent, silent_step = timed(settings_for(simulator, port=listener.port, connect_timeout=CONNECT_TIMEOUT))
        with unanswered_port() as port:
            dropped, dropped_step = timed(settings_for(simulator, port=port, connect_timeout=CONNECT_TIMEOUT))
    times = [elapsed for elapsed, _ in passing]
    print(
        f"Test against the simulator, {rounds} runs: median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms (target under 1000 ms)"
    )
    print(
        f"Port that accepts but never answers: {silent:.2f} s, failed at {silent_step} "
        f"({silent / CONNECT_TIMEOUT:.2f}x the {CONNECT_TIMEOUT:.0f} s connect timeout)"
    )
    print(
        f"Host whose SYNs go unanswered:       {dropped:.2f} s, failed at {dropped_step} "
        f"({dropped / CONNECT_TIMEOUT:.2f}x the {CONNECT_TIMEOUT:.0f} s connect timeout)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
