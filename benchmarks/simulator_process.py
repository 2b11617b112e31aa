"""The simulator in a process of its own, as Defender is a server elsewhere.

In the benchmark's own process the simulator's server threads would take turns with the client for one interpreter
lock, so time Defender spends preparing a page would count as the client's, and work the client overlaps with
Defender's (reading one page while the next is prepared) could not overlap at all.
"""

import multiprocessing
import types
from collections.abc import Iterator
from contextlib import contextmanager


def _serve(alerts_on_bulk_machine: int, pipe) -> None:
    from defender.simulator import Simulator

    simulator = Simulator(seed=1, alerts_on_bulk_machine=alerts_on_bulk_machine).start()
    try:
        pipe.send(
            {
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
        pipe.recv()  # until told to stop, or the benchmark's end closes the pipe
    except EOFError:
        pass
    finally:
        simulator.stop()


@contextmanager
def simulator_process(alerts_on_bulk_machine: int) -> Iterator[types.SimpleNamespace]:
    """A started simulator in a child process: what a client needs of it (tests.fixtures.connection.settings_for
    takes it), with its bulk machine holding ``alerts_on_bulk_machine`` alerts."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(alerts_on_bulk_machine, theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(120):
            raise RuntimeError("the simulator process did not start within 2 minutes")
        facts = ours.recv()
        yield types.SimpleNamespace(**{**facts, "app": types.SimpleNamespace(**facts["app"])})
    finally:
        ours.send("stop")
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
