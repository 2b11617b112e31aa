"""How much the services cost over a bare requests loop, fetching 10,000 alerts of one machine from the simulator.

Both sides make the same calls in the same process: the machine lookup, then the machine's alerts in pages of the
same size, with the same token. The services also normalise every alert into an Alert, reading each page while the
simulator prepares the next. Runs alternate, so drift in the machine's speed hits both. The simulator runs in a
process of its own, as Defender is a server elsewhere (benchmarks/simulator_process.py says why).
Run: .venv/bin/python benchmarks/alerts_fetch.py [alerts] [rounds]
"""

import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.simulator_process import simulator_process  # noqa: E402
from defender.services import auth  # noqa: E402
from defender.services.alerts import alerts_for_actor  # noqa: E402
from tests.fixtures.connection import settings_for  # noqa: E402

PAGE_SIZE = 1000


def bare_loop(session, simulator, token, hostname, since, until):
    """The minimal hand-written client: look the machine up, then follow nextLink through its alerts."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    base = f"{simulator.base_url}/api/v1.0"
    machines = session.get(
        f"{base}/machines",
        params={"$filter": f"startswith(computerDnsName,'{hostname}')", "$top": PAGE_SIZE},
        headers=headers,
        verify=simulator.ca_path,
        timeout=30,
    ).json()["value"]
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    url = f"{base}/machines/{machines[0]['id']}/alerts"
    params = {
        "$filter": f"alertCreationTime ge {since:{stamp}} and alertCreationTime le {until:{stamp}}",
        "$top": PAGE_SIZE,
        "$expand": "evidence",  # as the services ask: the evidence is most of each answer
    }
    found = []
    while url:
        page = session.get(url, params=params, headers=headers, verify=simulator.ca_path, timeout=30).json()
        found.extend(page["value"])
        url, params = page.get("@odata.nextLink"), None
    return found


def timed(function):
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def peak_memory(function):
    tracemalloc.start()
    result = function()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, current, result


def main(count=10_000, rounds=11):
    with simulator_process(count) as simulator:
        # A budget the rounds never reach: this measures the client's cost, not Microsoft's limits (the bare loop
        # keeps to none either).
        settings = settings_for(
            simulator,
            page_size=PAGE_SIZE,
            clock_skew_seconds=0,
            read_timeout=30.0,
            calls_per_minute=1_000_000,
            calls_per_hour=1_000_000,
        )
        hostname = simulator.bulk_hostname
        until = datetime.now(UTC)
        since = until - timedelta(days=31)
        token = auth.acquire_token(settings).access_token
        session = requests.Session()

        def services():
            return alerts_for_actor(settings, [hostname], since, until).alerts

        def bare():
            return bare_loop(session, simulator, token, hostname, since, until)

        # Warm both: TLS connections, the msal app, the trust bundle file.
        assert len(services()) == len(bare()) == count, "both sides must return every alert"
        service_times, bare_times = [], []
        for _ in range(rounds):
            service_times.append(timed(services)[0])
            bare_times.append(timed(bare)[0])

        service_peak, _, _ = peak_memory(services)
        bare_peak, raw_size, _ = peak_memory(bare)

        service_median, bare_median = statistics.median(service_times), statistics.median(bare_times)
        print(f"{count} alerts in pages of {PAGE_SIZE}, {rounds} alternating rounds (median):")
        print(f"  services (alerts_for_actor): {service_median * 1000:8.1f} ms  {_spread(service_times)}")
        print(f"  bare requests loop:          {bare_median * 1000:8.1f} ms  {_spread(bare_times)}")
        print(f"  ratio services / bare:       {service_median / bare_median:8.2f}x  (target <= 1.10x)")
        print("Peak memory while fetching (tracemalloc):")
        print(f"  services:                    {service_peak / 2**20:8.1f} MiB")
        print(f"  bare requests loop:          {bare_peak / 2**20:8.1f} MiB")
        print(f"  the alerts themselves:       {raw_size / 2**20:8.1f} MiB  (decoded JSON the bare loop keeps)")


def _spread(times):
    return f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"


if __name__ == "__main__":
    main(*(int(argument) for argument in sys.argv[1:3]))
