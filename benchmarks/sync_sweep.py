"""One sweep of a tenant against asking per actor: 1,000 actors on 20 machines, 30,000 alerts in the simulator.

Prints the first sweep (the lookback window: every alert fetched, matched and stored) and the second (nothing new),
each with its time and the calls the simulator counted, beside what Get alerts per actor would cost (2 calls per
actor: the machine lookup and its alerts). Run: .venv/bin/python benchmarks/sync_sweep.py [--alerts N]
[--machines N] [--actors N] [--database-url postgres://…] (default: a SQLite file in a temporary folder).
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pages_render import configure  # noqa: E402


def actors_for(names, total):
    from defender.models import Actor

    machines = [Actor(name=f"machine {index}", hostname=fqdn.split(".")[0]) for index, fqdn in enumerate(names)]
    idle = [Actor(name=f"idle {index}", hostname=f"idle-{index:04d}") for index in range(total - len(machines))]
    Actor.objects.bulk_create(machines + idle)


def run(arguments):
    from benchmarks.simulator_process import simulator_process
    from defender import presets
    from defender.models import Integration
    from defender.operations import sync

    # The simulator in a process of its own, as Defender is: in this one it would take turns with the sweep for the
    # interpreter lock, and the next page could not be prepared while this one is stored.
    with simulator_process(fleet=(arguments.alerts, arguments.machines, 5)) as simulator:
        actors_for(simulator.fleet_names, arguments.actors)
        integration = Integration(
            name="Sweep benchmark",
            host=simulator.host,
            port=simulator.port,
            auth_url=simulator.auth_url,
            tenant_id=simulator.tenant_id,
            client_id=simulator.app.client_id,
            client_secret=simulator.app.client_secret,
            ca_certificate=simulator.ca_pem,
            api_flavour=presets.MDE,
            resource="https://api.securitycenter.microsoft.com",
            read_timeout=120.0,
        )
        integration.save()
        print(
            f"{arguments.actors:,} actors, {arguments.machines} machines, {arguments.alerts:,} alerts "
            f"({'PostgreSQL' if arguments.database_url else 'SQLite'})"
        )
        for label in ("first sweep (lookback window)", "second sweep (nothing new)"):
            simulator.reset_counters()
            started = time.perf_counter()
            summary = sync.sync_integration(integration)
            elapsed = time.perf_counter() - started
            print(
                f"  {label:32} {elapsed:7.2f} s  {simulator.api_calls()} calls  {summary.fetched:,} fetched  "
                f"{summary.stored:,} stored  {summary.actors_touched} actors touched"
                + (f"  ERROR {summary.error}" if summary.error else "")
            )
        bound = math.ceil(arguments.alerts / 10000) + 2
        print(f"  bound: {bound} calls for the first sweep, 2 for the second")
        print(f"  Get alerts for every actor instead: about {2 * arguments.actors:,} calls")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=30000)
    parser.add_argument("--machines", type=int, default=20)
    parser.add_argument("--actors", type=int, default=1000)
    parser.add_argument("--database-url", default="")
    arguments = parser.parse_args()
    drop = None
    url = arguments.database_url
    if url:
        from benchmarks.data_path import throwaway_database

        url, drop = throwaway_database(url)
    try:
        with tempfile.TemporaryDirectory(prefix="sync-sweep-db-") as folder:
            configure(Path(folder), url)
            run(arguments)
    finally:
        if drop:
            drop()


if __name__ == "__main__":
    main()
