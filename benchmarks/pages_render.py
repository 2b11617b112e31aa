"""Server time to render the busiest pages: the integrations list with 200 integrations, and an actor's page with
10,000 stored alerts (sorted, filtered, narrowed in time, and exported as CSV), against the login page as a baseline
in the same run.

A throwaway SQLite database in a temporary folder, migrated in-process; DEBUG off, as in production. Each page is
rendered once to warm up, then timed N times with the test Client as a signed-in administrator; the query count
comes from one extra render. Target: under 100 ms per page render.
Run: .venv/bin/python benchmarks/pages_render.py [renders]
"""

import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

INTEGRATIONS = 200
ALERTS = 10_000
ASKED_INTEGRATIONS = 3
TARGET_MS = 100
SEVERITIES = ["Informational", "Low", "Medium", "High"]
STATUSES = ["New", "InProgress", "Resolved"]


def configure(folder, database_url=""):
    from cryptography.fernet import Fernet

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "integrations_site.settings",
            "DATABASE_URL": database_url or f"sqlite:///{folder / 'bench.sqlite3'}",
            "VAR_DIR": str(folder),
            "STATIC_ROOT": str(folder),  # whitenoise finds a folder; the pages name their files plainly
            "DEBUG": "false",
            "SECRET_KEY": "benchmark-only-" + "x" * 40,
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "localhost",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import override_settings

    # Server time of the pages, not of collectstatic: the static files by their plain names, as the test suite does.
    override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        }
    ).enable()
    call_command("migrate", verbosity=0)


def populate():
    from django.contrib.auth.models import Group, User

    from defender.models import Actor, Alert, AlertFetch, AlertSource, Integration, recount_alerts
    from defender.roles import ADMINISTRATORS

    admin = User.objects.create_user("bench-admin", password="bench-only-password")
    admin.groups.add(Group.objects.get(name=ADMINISTRATORS))
    Integration.objects.bulk_create(
        Integration(
            name=f"Defender {number:03}",
            host="api.security.microsoft.com",
            client_id="0b6f1d2e-0000-4000-8000-00000000bbbb",
            client_secret="benchmark-only-secret",
            tenant_id="72f988bf-0000-4000-8000-00000000aaaa",
            last_test_at=datetime.now(UTC) if number % 2 else None,
            last_test_ok=bool(number % 3) if number % 2 else None,
            last_test_summary="GET /api/alerts answered 200 with 1 alert." if number % 2 else "",
        )
        for number in range(INTEGRATIONS)
    )
    actor = Actor.objects.create(name="Finance workstation", hostname="ws-fin-07")
    asked = list(Integration.objects.order_by("pk")[:ASKED_INTEGRATIONS])
    now = datetime.now(UTC)
    Alert.objects.bulk_create(
        (
            Alert(
                tenant_id=asked[number % len(asked)].tenant_id.lower(),
                actor=actor,
                alert_id=f"da{number:012}_{number * 7919 % 100000}",
                title=f"Suspicious activity number {number % 97}",
                severity=SEVERITIES[number % 4],
                severity_rank=Alert.SEVERITY_RANKS[SEVERITIES[number % 4]],
                status=STATUSES[number % 3],
                category="Execution",
                detection_source="WindowsDefenderAtp",
                created=now - timedelta(minutes=number),
                machine_name="ws-fin-07.corp.contoso.com",
                matched_name="ws-fin-07",
                mitre_techniques=["T1059.001", "T1105"],
                portal_url=f"https://security.microsoft.com/alerts/da{number:012}",
                raw={"id": f"da{number:012}", "title": "Suspicious activity", "evidence": [{"n": n} for n in range(5)]},
                first_seen_at=now,
                updated_at=now,
            )
            for number in range(ALERTS)
        ),
        batch_size=1000,
    )
    # Each alert returned by one of the asked integrations, in turn.
    AlertSource.objects.bulk_create(
        (
            AlertSource(
                alert_id=pk, actor=actor, integration=asked[number % len(asked)], first_seen_at=now, last_seen_at=now
            )
            for number, pk in enumerate(Alert.objects.order_by("alert_id").values_list("pk", flat=True))
        ),
        batch_size=1000,
    )
    recount_alerts([actor.pk])  # the count storing keeps, which bulk_create above does not
    for integration in asked:
        AlertFetch.objects.create(
            actor=actor,
            integration=integration,
            asked_at=now,
            since=now - timedelta(days=30),
            until=now,
            ok=True,
            message=f"{ALERTS // ASKED_INTEGRATIONS} alerts on ws-fin-07.corp.contoso.com.",
            alert_count=ALERTS // ASKED_INTEGRATIONS,
        )
    return admin, actor


def measure(client, url, renders):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def render():
        response = client.get(url)
        assert response.status_code == 200, f"{url} answered {response.status_code}"
        # A streamed answer is only rendered once it is read.
        size = len(b"".join(response.streaming_content)) if response.streaming else len(response.content)
        return size

    size = render()
    with CaptureQueriesContext(connection) as captured:
        render()
    # Counted now: the next request clears the connection's query log.
    queries = len(captured)
    timings = []
    for _ in range(renders):
        started = time.perf_counter()
        render()
        timings.append((time.perf_counter() - started) * 1000)
    return (
        {"median": statistics.median(timings), "p95": percentile(timings, 95), "min": min(timings)},
        queries,
        size,
    )


def percentile(values, rank):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(rank / 100 * (len(ordered) - 1)))]


def main():
    renders = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    with tempfile.TemporaryDirectory(prefix="pages-render-") as folder:
        configure(Path(folder))
        from django.test import Client

        started = time.perf_counter()
        admin, actor = populate()
        print(
            f"{INTEGRATIONS} integrations, {ALERTS:,} stored alerts behind one actor, set up in "
            f"{time.perf_counter() - started:.1f} s; {renders} renders per page, DEBUG off, SQLite\n"
        )
        anonymous = Client(HTTP_HOST="localhost")
        signed_in = Client(HTTP_HOST="localhost")
        signed_in.force_login(admin)
        pages = [
            ("login page (baseline)", anonymous, "/accounts/login/", False),
            ("integrations list", signed_in, "/settings/integrations/", True),
            ("actor page", signed_in, f"/actors/{actor.pk}/", True),
            ("actor page, by severity", signed_in, f"/actors/{actor.pk}/?sort=-severity&page=100", True),
            ("actor page, filtered", signed_in, f"/actors/{actor.pk}/?severity=High&status=New&sort=title", True),
            ("actor page, last 24 hours", signed_in, f"/actors/{actor.pk}/?period=24h", True),
            ("actors list", signed_in, "/actors/", True),
            (f"CSV export, all {ALERTS:,} rows", signed_in, f"/actors/{actor.pk}/alerts.csv", False),
        ]
        print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'min ms':>8} {'queries':>8} {'KiB':>7} {'x login':>8}")
        baseline = None
        slow = []
        for name, client, url, targeted in pages:
            timing, queries, size = measure(client, url, renders)
            baseline = baseline or timing["median"]
            print(
                f"{name:34} {timing['median']:10.1f} {timing['p95']:8.1f} {timing['min']:8.1f} {queries:8d} "
                f"{size / 1024:7.0f} {timing['median'] / baseline:8.1f}"
            )
            if targeted and timing["median"] >= TARGET_MS:
                slow.append(name)
        verdict = f"missed by {', '.join(slow)}" if slow else "met"
        print(f"\nTarget: every page render under {TARGET_MS} ms (median): {verdict}.")


if __name__ == "__main__":
    main()
