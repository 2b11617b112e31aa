"""The data path at scale on PostgreSQL: 1,000 actors, 10 integrations and --alerts stored alerts (default 1,000,000),
one actor holding 100,000 of them (or a tenth when fewer are asked for).

Prints, for each page, the server time (Django's test Client, in-process, DEBUG off), the ratio to the login page and
the query count; the CSV export's cost per row against a naive loop over model instances; and storing 10,000 alerts
fetched from a simulator in a process of its own against fetching them. Rows are generated in SQL (generate_series),
so 1M take a minute.
Run: .venv/bin/python benchmarks/data_path.py [--alerts N] [--database-url postgres://…] [--renders N]
Without --database-url a throwaway database is created next to the one DATABASE_URL names, and dropped after.
"""

import argparse
import csv
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pages_render import configure, measure  # noqa: E402

ACTORS = 1_000
INTEGRATIONS = 10
BIG = 100_000
TENANT = "72f988bf-0000-4000-8000-00000000aaaa"


def throwaway_database(url):
    import psycopg

    name = f"bench_data_path_{os.getpid()}"
    base = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}", lambda: _drop(base, name)


def _drop(base, name):
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


def populate(total):
    from django.contrib.auth.models import Group, User
    from django.db import connection

    from defender.models import Actor, Alert, AlertFetch, AlertSource, Integration, recount_alerts
    from defender.roles import ADMINISTRATORS

    admin = User.objects.create_user("bench-admin", password="bench-only-password")
    admin.groups.add(Group.objects.get(name=ADMINISTRATORS))
    now = datetime.now(UTC)
    Integration.objects.bulk_create(
        Integration(
            name=f"Defender {number:02}",
            host="api.security.microsoft.com",
            client_id="0b6f1d2e-0000-4000-8000-00000000bbbb",
            client_secret="benchmark-only-secret",
            tenant_id=TENANT,
            last_test_at=now if number % 2 else None,
            last_test_ok=bool(number % 3) if number % 2 else None,
        )
        for number in range(INTEGRATIONS)
    )
    Actor.objects.bulk_create(Actor(name=f"actor-{number:04}", hostname=f"ws-{number:04}") for number in range(ACTORS))
    first_actor = Actor.objects.order_by("pk").first().pk
    first_integration = Integration.objects.order_by("pk").first().pk
    big = min(BIG, total // 10)
    # A million rows go in several times faster with the sort indexes built once afterwards than kept row by row.
    with connection.schema_editor() as editor:
        for model in (Alert, AlertSource):
            for index in model._meta.indexes:
                editor.remove_index(model, index)
    with connection.cursor() as cursor:
        # Actor 1 holds `big` alerts; the rest are spread over the other actors. Severity, status, titles and times
        # vary so that every sort and filter has work to do.
        cursor.execute(
            """
            INSERT INTO defender_alert (tenant_id, actor_id, alert_id, title, severity, severity_rank, detail_rank,
                status, category,
                detection_source, created, first_event, last_event, last_update, machine_name, matched_name, device_id,
                mitre_techniques, incident_id, incident_url, threat_family, threat_name, detector_id, classification,
                determination, assigned_to, service_source, product_name, portal_url, evidence, raw, first_seen_at,
                updated_at)
            SELECT %(tenant)s,
                CASE WHEN g <= %(big)s THEN %(first)s ELSE %(first)s + 1 + (g %% (%(actors)s - 1)) END,
                'da' || g, 'Suspicious activity number ' || (g::bigint * 7919 %% 97),
                (ARRAY['Unspecified','Informational','Low','Medium','High'])[1 + g %% 5], g %% 5, 1,
                (ARRAY['New','InProgress','Resolved'])[1 + g %% 3], 'Category ' || (g %% 11), 'Source ' || (g %% 5),
                %(now)s - g * interval '1 minute', %(now)s - g * interval '1 minute' - interval '5 minutes',
                %(now)s - g * interval '1 minute', %(now)s, 'ws-' || (g %% 13) || '.corp.contoso.com', 'ws-fin',
                'dev' || g, '["T1059.001", "T1105"]', '', '', '', '', '', '', '', '', '', '',
                'https://security.microsoft.com/alerts/da' || g, '[{"entity_type": "File", "file_name": "x.ps1"}]',
                '{}', %(now)s, %(now)s
            FROM generate_series(1, %(total)s) g
            """,
            {"tenant": TENANT, "big": big, "first": first_actor, "actors": ACTORS, "now": now, "total": total},
        )
        cursor.execute(
            "INSERT INTO defender_alertsource (alert_id, actor_id, integration_id, first_seen_at, last_seen_at) "
            "SELECT id, actor_id, %s + id %% %s, %s, %s FROM defender_alert",
            [first_integration, INTEGRATIONS, now, now],
        )
        cursor.execute("SET maintenance_work_mem = '512MB'")
    with connection.schema_editor() as editor:
        for model in (Alert, AlertSource):
            for index in model._meta.indexes:
                editor.add_index(model, index)
    with connection.cursor() as cursor:
        # What autovacuum does soon after a bulk load (PostgreSQL 13+ vacuums after inserts too): statistics, and
        # the visibility map that lets a page skip rows in an index alone.
        cursor.execute("VACUUM ANALYZE")
    recount_alerts(Actor.objects.values_list("pk", flat=True))
    for integration in Integration.objects.order_by("pk")[:2]:
        AlertFetch.objects.create(
            actor_id=first_actor,
            integration=integration,
            asked_at=now,
            since=now - timedelta(days=400),
            until=now,
            ok=True,
            message="benchmark",
            alert_count=big // INTEGRATIONS,
        )
    return admin, first_actor, big


def csv_per_row(client, actor, rows):
    from defender.alert_export import neutralise
    from defender.models import Alert

    started = time.perf_counter()
    response = client.get(f"/actors/{actor}/alerts.csv?period=all")
    size = sum(len(chunk) for chunk in response.streaming_content)
    streamed = time.perf_counter() - started
    assert size > rows * 100, "the export came back short"
    # The naive loop: one model instance a row, the integrations' names asked per row, every field formatted.
    writer = csv.writer(type("Echo", (), {"write": lambda self, value: value})())
    sample = min(rows, 20_000)
    started = time.perf_counter()
    for alert in Alert.objects.filter(actor_id=actor).order_by("-created", "-pk")[:sample].iterator(chunk_size=2000):
        names = "; ".join(alert.integrations.values_list("name", flat=True))
        writer.writerow([neutralise(getattr(alert, field.attname)) for field in Alert._meta.concrete_fields] + [names])
    naive = time.perf_counter() - started
    return streamed / rows * 1e6, naive / sample * 1e6, streamed


def store_versus_fetch(rounds=5):
    """Fetch the bulk machine's 10,000 alerts from the simulator (in a process of its own, as Defender is) and store
    them, alternately, ``rounds`` times: each store is of new alerts (another tenant's integration each time), into
    the million. Then the same alerts once more, every row an update. Medians, in seconds."""
    from statistics import median

    from benchmarks.simulator_process import simulator_process
    from defender import alert_store
    from defender.models import Actor, Integration
    from defender.services.alerts import alerts_for_actor
    from tests.fixtures.connection import settings_for

    fetches, stores = [], []
    with simulator_process(10_000) as simulator:
        settings = settings_for(simulator, page_size=10_000, clock_skew_seconds=0, read_timeout=60.0)
        until = datetime.now(UTC)
        since = until - timedelta(days=31)
        alerts_for_actor(settings, [simulator.bulk_hostname], since, until)  # warm: TLS, token
        actor = Actor.objects.create(name="bulk", hostname=simulator.bulk_hostname)
        template = Integration.objects.order_by("pk").first()
        for number in range(rounds):
            started = time.perf_counter()
            fetched = alerts_for_actor(settings, [simulator.bulk_hostname], since, until).alerts
            fetches.append(time.perf_counter() - started)
            integration = Integration.objects.create(
                name=f"Store round {number}",
                host=template.host,
                client_id=template.client_id,
                client_secret="benchmark-only-secret",
                tenant_id=f"72f988bf-0000-4000-8000-{number:012}",
            )
            started = time.perf_counter()
            alert_store.store_alerts(actor, integration, fetched)
            stores.append(time.perf_counter() - started)
    started = time.perf_counter()
    alert_store.store_alerts(actor, integration, fetched)  # asked again: every row an update
    restore = time.perf_counter() - started
    return len(fetched), median(fetches), median(stores), restore


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--renders", type=int, default=15)
    arguments = parser.parse_args()
    drop = None
    url = arguments.database_url
    if not url:
        url, drop = throwaway_database(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    try:
        with tempfile.TemporaryDirectory(prefix="data-path-") as folder:
            configure(Path(folder), url)
            run(arguments)
    finally:
        if drop:
            drop()


def run(arguments):
    from django.test import Client

    started = time.perf_counter()
    admin, actor, big = populate(arguments.alerts)
    print(
        f"PostgreSQL, {ACTORS:,} actors, {INTEGRATIONS} integrations, {arguments.alerts:,} alerts ({big:,} on one "
        f"actor), generated in {time.perf_counter() - started:.1f} s; {arguments.renders} renders a page, median\n"
    )
    anonymous = Client(HTTP_HOST="localhost")
    signed_in = Client(HTTP_HOST="localhost")
    signed_in.force_login(admin)
    last = (big + 49) // 50
    base = f"/actors/{actor}/"
    pages = [
        ("login page (baseline)", anonymous, "/accounts/login/"),
        ("Actors list", signed_in, "/actors/"),
        ("Actors list, last page", signed_in, f"/actors/?page={ACTORS // 25}"),
        ("integrations list (10 rows)", signed_in, "/settings/integrations/"),
        ("actor page (window last asked)", signed_in, base),
        ("actor page, any time", signed_in, f"{base}?period=all"),
        ("actor page, last page", signed_in, f"{base}?period=all&page={last}"),
        ("actor page, middle page", signed_in, f"{base}?period=all&page={last // 2}"),
    ]
    for sort in ("created", "severity", "title", "category", "detection_source", "status", "machine_name"):
        for order in (sort, f"-{sort}"):
            for query in ("", "&severity=High&status=New", "&severity=Low&severity=Medium"):
                for page in (1, "last"):
                    pages.append(
                        (
                            f"sort {order}{' filtered' if query else ''} p{page}",
                            signed_in,
                            f"{base}?period=all&sort={order}{query}&page={page}",
                        )
                    )
    print(f"{'page':44} {'ms':>8} {'x login':>8} {'queries':>8}")
    baseline = None
    worst = ("", 0.0, 0)
    for name, client, url in pages:
        timing, queries, _ = measure(client, url, arguments.renders if not name.startswith("sort") else 3)
        baseline = baseline or timing["median"]
        if name.startswith("sort"):
            worst = max(worst, (name, timing["median"], queries), key=lambda item: item[1])
            continue
        print(f"{name:44} {timing['median']:8.1f} {timing['median'] / baseline:8.1f} {queries:8d}")
    name, median, queries = worst
    print(f"{'worst sort/filter/page (' + name + ')':44} {median:8.1f} {median / baseline:8.1f} {queries:8d}")
    streamed_us, naive_us, streamed = csv_per_row(signed_in, actor, big)
    print(
        f"\nCSV export of {big:,} rows: {streamed_us:.1f} µs a row ({streamed:.1f} s), naive loop {naive_us:.1f} µs a "
        f"row: {naive_us / streamed_us:.1f}x faster; 1M rows would take {streamed_us:.0f} s"
    )
    count, fetch, store, restore = store_versus_fetch()
    print(
        f"Store vs fetch, {count:,} alerts from the simulator in a process of its own, median of 5 alternate rounds: "
        f"fetch {fetch:.2f} s, store {store:.2f} s ({store / fetch:.2f}x, target 1x or less), stored again (updates) "
        f"{restore:.2f} s ({restore / fetch:.2f}x)"
    )


if __name__ == "__main__":
    main()
