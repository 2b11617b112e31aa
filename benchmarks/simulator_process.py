"""The simulator in a process of its own, as Defender is a server elsewhere.

In the benchmark's own process the simulator's server threads would take turns with the client for one interpreter
lock, so time Defender spends preparing a page would count as the client's, and work the client overlaps with
Defender's (reading one page while the next is prepared) could not overlap at all.
"""

import multiprocessing
import types
from collections.abc import Iterator
from contextlib import contextmanager


def _serve(alerts_on_bulk_machine: int, pipe, fleet: tuple[int, int, int] | None = None) -> None:
    from defender.simulator import Simulator

    if fleet:
        alerts, machines, seed = fleet
        simulator = Simulator(seed=seed)
        names = simulator.seed_fleet(alerts, machines)
        simulator.start()
    else:
        simulator, names = Simulator(seed=1, alerts_on_bulk_machine=alerts_on_bulk_machine).start(), []
    try:
        pipe.send(
            {
                "fleet_names": names,
                "host": simulator.host,
                "port": simulator.port,
                "siem_host": simulator.siem_host,
                "siem_port": simulator.siem_port,
                "base_url": simulator.base_url,
                "auth_url": simulator.auth_url,
                "tenant_id": simulator.tenant_id,
                "ca_pem": simulator.ca_pem,
                "ca_path": simulator.ca_path,
                "bulk_hostname": simulator.bulk_hostname,
                "app": {"client_id": simulator.app.client_id, "client_secret": simulator.app.client_secret},
            }
        )
        # Until told to stop, or the benchmark's end closes the pipe: the counters asked for, or reset.
        while (asked := pipe.recv()) != "stop":
            if asked == "reset":
                simulator.reset_counters()
            pipe.send(simulator.api_calls)
    except EOFError:
        pass
    finally:
        simulator.stop()


@contextmanager
def simulator_process(
    alerts_on_bulk_machine: int = 0, fleet: tuple[int, int, int] | None = None
) -> Iterator[types.SimpleNamespace]:
    """A started simulator in a child process: what a client needs of it (tests.fixtures.connection.settings_for
    takes it), with its bulk machine holding ``alerts_on_bulk_machine`` alerts, or, with ``fleet`` (alerts,
    machines, seed), that many alerts seeded on that many machines, whose names it gives as ``fleet_names``.
    ``api_calls()`` and ``reset_counters()`` ask the simulator's call count, and reset it."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(alerts_on_bulk_machine, theirs, fleet), daemon=True)
    child.start()
    try:
        if not ours.poll(120):
            raise RuntimeError("the simulator process did not start within 2 minutes")
        facts = ours.recv()

        def ask(what: str) -> int:
            ours.send(what)
            return ours.recv()

        yield types.SimpleNamespace(
            **{**facts, "app": types.SimpleNamespace(**facts["app"])},
            api_calls=lambda: ask("calls"),
            reset_counters=lambda: ask("reset"),
        )
    finally:
        ours.send("stop")
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
