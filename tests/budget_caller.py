"""A worker-like process for the call budget's process tests: it counts its calls in the Redis given, as every worker
of a site on Redis does, and calls the simulator's Defender API when told to.

    python tests/budget_caller.py ORDERS.json

ORDERS.json: {"settings": {...ConnectionSettings on the wire...}, "redis_url": ..., "waits": [seconds, ...] (one call
per entry, each waiting up to that long for a slot), "marker": the alert ID each call asks for, "go": a file to wait
for before the first call, "events": a file to append one JSON line to per event}. Each event carries Redis's clock
("at"), the only clock the budget uses.
"""

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from defender.remote.wire import settings_from_wire  # noqa: E402
from defender.services import auth, budget  # noqa: E402
from defender.services.client import ApiClient  # noqa: E402
from defender.services.errors import DefenderError  # noqa: E402

# How long to wait for the test's go: generous, since the test may be slow to start on a loaded machine.
GO_TIMEOUT = 60.0


def main(orders_path: str) -> int:
    orders = json.loads(Path(orders_path).read_text())
    counted = budget.configure(redis_url=orders["redis_url"])
    assert isinstance(counted, budget.InRedis)
    clock = counted._client
    events = Path(orders["events"])

    def event(kind: str, **values: object) -> None:
        seconds, micros = clock.time()
        with events.open("a") as out:
            out.write(json.dumps({"event": kind, "at": seconds + micros / 1e6, **values}) + "\n")

    settings = settings_from_wire(orders["settings"])
    api = ApiClient(settings, auth.TokenSource(settings))
    api.tokens.token()  # the token first: the calls then start together at the go
    event("ready")
    go = Path(orders["go"])
    deadline = time.monotonic() + GO_TIMEOUT
    while not go.exists():
        if time.monotonic() > deadline:
            event("no-go")
            return 2
        time.sleep(0.01)
    for index, wait in enumerate(orders["waits"]):
        budget.use(counted, float(wait))
        try:
            api.get(api.url("/api/alerts"), {"$top": 1, "$filter": f"id eq '{orders['marker']}'"})
        except budget.BudgetSpent as spent:
            event("spent", call=index, message=str(spent))
        except DefenderError as error:
            # What the budget holds now: after a 429, the pause every process waits for.
            paused_until = counted.usage(api.budget.key).paused_until
            event("failed", call=index, code=error.code, message=str(error), paused_until=paused_until)
        else:
            event("ok", call=index)
    event("done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
