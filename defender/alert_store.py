"""The alerts kept for actors: what each integration answered, stored, and read back for the actor's page.

The table, its filters and the CSV export read the stored rows, so they never call Defender again (asking is
``defender.operations.alerts``). An alert is one row per tenant and alert ID: a Defender API, a Graph and a SIEM
integration of one tenant return the same alert, and the row names each of them (AlertSource, with when each first and
last returned it). An answer that cannot be stored is recorded as a failed ask for its integration, in its
own transaction, and never touches what the others stored.
"""

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Prefetch
from django.db.models.functions import Greatest
from django.utils import timezone

from defender import presets
from defender.models import Actor, Alert, AlertFetch, AlertSource, Integration
from defender.services import alerts as services_alerts
from defender.services.untrusted import storable_json, storable_text, text

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
UPDATED_FIELDS = [
    "actor",
    "title",
    "severity",
    "severity_rank",
    "detail_rank",
    "status",
    "category",
    "detection_source",
    "created",
    "first_event",
    "last_event",
    "last_update",
    "resolved",
    "machine_name",
    "matched_name",
    "mitre_techniques",
    *services_alerts.ALERT_TEXT_LENGTHS,
    "portal_url",
    "evidence",
    "raw",
    "updated_at",
]
# The columns the table and the CSV never read: the detail page loads them for one alert.
DETAIL_ONLY = ("raw", "evidence")
# Read once: Django's enum `.values` and `_meta.get_field` build their answers on every call, 10,000 times a page.
SEVERITIES = frozenset(Alert.Severity.values)
STATUSES = frozenset(Alert.Status.values)
MAX_LENGTHS = {field.name: field.max_length for field in Alert._meta.concrete_fields if field.max_length}
STORED_FIELDS = [field for field in Alert._meta.concrete_fields if not field.primary_key]
STORED_ATTNAMES = [field.attname for field in STORED_FIELDS]
STORED_COLUMNS = [str(field.column) for field in STORED_FIELDS]
COLUMNS = {field.name: str(field.column) for field in Alert._meta.concrete_fields}
# An https URL with a host (urlsplit's test, stricter about blanks, at a tenth of its cost per alert).
HTTPS_WITH_HOST = re.compile(r"https://[^/?#\s]", re.IGNORECASE)
JSON_FIELDS = frozenset(field.attname for field in STORED_FIELDS if field.get_internal_type() == "JSONField")


@dataclass(frozen=True)
class Outcome:
    """What one integration answered, before it is stored."""

    integration: Integration
    ok: bool
    message: str
    since: datetime  # the window as asked, without the clock-skew widening
    until: datetime
    tried_names: tuple[str, ...] = ()
    alerts: tuple[services_alerts.Alert, ...] = ()


def record_outcome(actor: Actor, outcome: Outcome, asked_at: datetime) -> AlertFetch:
    """Store what one integration answered (its alerts, if any) and note the ask, in one transaction; used for remote
    answers too. If the alerts cannot be stored, the ask is recorded as failed and the rows stored before stay."""
    try:
        with transaction.atomic():
            if outcome.ok:
                store_alerts(actor, outcome.integration, outcome.alerts, asked_at)
            return _note_ask(actor, outcome, asked_at)
    except Exception:
        # Whatever went wrong belongs to this integration's answer: its row says so, the log has the details.
        logger.exception("Storing the alerts of integration %s failed", outcome.integration.pk)
    message = (
        f"The alerts {outcome.integration.name} sent could not be stored; the server log has the details. "
        "The alerts stored before are kept."
    )
    failed = Outcome(outcome.integration, False, message, outcome.since, outcome.until, outcome.tried_names)
    with transaction.atomic():
        return _note_ask(actor, failed, asked_at)


def _note_ask(actor, outcome, asked_at):
    fetch, _ = AlertFetch.objects.update_or_create(
        actor=actor,
        integration=outcome.integration,
        defaults={
            "asked_at": asked_at,
            "since": outcome.since,
            "until": outcome.until,
            "clock_skew_seconds": outcome.integration.clock_skew_seconds,
            "tried_names": list(outcome.tried_names),
            "ok": outcome.ok,
            "message": outcome.message,
            "alert_count": len(outcome.alerts),
        },
    )
    return fetch


def tenant_key(integration: Integration) -> str:
    """The tenant an integration's alerts belong to: its tenant ID as typed, compared without case (a GUID)."""
    return integration.tenant_id.strip().lower()


def store_alerts(
    actor: Actor,
    integration: Integration,
    alerts: Iterable[services_alerts.Alert],
    now: datetime | None = None,
) -> int:
    """Insert new alerts and update the ones already stored (keyed by tenant and Defender's alert ID), and note that
    this integration returned each of them."""
    now = now or timezone.now()
    unique: dict[str, services_alerts.Alert] = {}
    for alert in alerts:
        # One alert can come back twice (two machine records for the same endpoint); one row each, the first wins.
        unique.setdefault(alert.id, alert)
    tenant = tenant_key(integration)
    try:
        with transaction.atomic():
            _upsert(integration, tenant, [_row(actor, integration, alert, now) for alert in unique.values()], now)
    except (DatabaseError, ValueError, TypeError, RecursionError):
        # The database refused a value as the API sent it (PostgreSQL keeps no NUL character, no database a lone
        # surrogate, and JSON nested hundreds deep overflows its encoder): store copies any database takes. Making
        # every value storable first would cost a quarter of the time storing takes, for answers that rarely need it.
        logger.info("Storing the alerts of integration %s again with their text cleaned", integration.pk)
        with transaction.atomic():
            rows = [_row(actor, integration, alert, now, clean=True) for alert in unique.values()]
            _upsert(integration, tenant, rows, now)
    return len(unique)


def _upsert(integration, tenant, rows, now):
    # The SIEM exporter's copy of an alert is its poorest: when a Defender API or Graph integration of the tenant
    # stored the alert, the row keeps theirs (detail_rank) and only notes that this one returned it too.
    ids = [row["alert_id"] for row in rows]
    if not ids:
        return
    actor_id = rows[0]["actor_id"]
    if connection.vendor == "postgresql":
        # The rule is part of the upsert itself, so two integrations storing the same alert at once keep it too.
        inserted, moved = _upsert_copied(integration, tenant, ids, rows, now, actor_id)
    else:
        richer = set()
        for start in range(0, len(ids), BATCH_SIZE):
            found = Alert.objects.filter(
                tenant_id=tenant, alert_id__in=ids[start : start + BATCH_SIZE], detail_rank__gt=rows[0]["detail_rank"]
            )
            richer.update(found.values_list("alert_id", flat=True))
        rows = [row for row in rows if row["alert_id"] not in richer]
        inserted, moved = _upsert_batched(integration, tenant, ids, rows, now, actor_id)
    # Actor.alert_count: the new rows, and the rows that moved from one actor to another (an alert matched anew).
    gained, lost = Counter({actor_id: inserted}), Counter()
    for (was_on, now_on), count in moved.items():
        gained[now_on] += count
        lost[was_on] += count
    for actor, count in (+gained).items():
        Actor.objects.filter(pk=actor).update(alert_count=F("alert_count") + count)
    for actor, count in lost.items():
        Actor.objects.filter(pk=actor).update(alert_count=Greatest(F("alert_count") - count, 0))


def _upsert_batched(integration, tenant, ids, rows, now, actor_id):
    """SQLite: batched bulk upserts; which rows are new (or move from another actor) is read first."""
    stored = {}
    upserted = [row["alert_id"] for row in rows]
    for start in range(0, len(upserted), BATCH_SIZE):
        found = Alert.objects.filter(tenant_id=tenant, alert_id__in=upserted[start : start + BATCH_SIZE])
        stored.update(found.values_list("alert_id", "actor_id"))
    inserted = sum(1 for alert_id in upserted if alert_id not in stored)
    moved = Counter((owner, actor_id) for owner in stored.values() if owner != actor_id)
    Alert.objects.bulk_create(
        [_instance(row) for row in rows],
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["tenant_id", "alert_id"],
        update_fields=UPDATED_FIELDS,
    )
    # Read the keys back rather than trust bulk_create to set them: not every database returns them on a conflict.
    # The actor is the row's own: a richer copy kept its actor.
    sources = []
    for start in range(0, len(ids), BATCH_SIZE):
        keys = Alert.objects.filter(tenant_id=tenant, alert_id__in=ids[start : start + BATCH_SIZE])
        sources += [
            AlertSource(alert_id=pk, actor_id=owner, integration=integration, first_seen_at=now, last_seen_at=now)
            for pk, owner in keys.values_list("pk", "actor_id")
        ]
    AlertSource.objects.bulk_create(
        sources,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["alert", "integration"],
        update_fields=["last_seen_at", "actor"],
    )
    if moved:
        # The other integrations' sources of an alert that moved here move with it.
        for start in range(0, len(upserted), BATCH_SIZE):
            here = Alert.objects.filter(
                tenant_id=tenant, actor_id=actor_id, alert_id__in=upserted[start : start + BATCH_SIZE]
            )
            AlertSource.objects.filter(alert__in=here).exclude(actor_id=actor_id).update(actor_id=actor_id)
    return inserted, moved


def _upsert_copied(integration, tenant, ids, rows, now, actor_id):
    """PostgreSQL: the alerts not stored yet are COPYed straight into the table, with keys taken from its sequence;
    the ones stored already go through a temporary table and one INSERT … ON CONFLICT DO UPDATE, which keeps a
    richer copy. Then one statement notes the sources. JSON is encoded by orjson (a tenth of the json module's time).
    Staging the new rows too cost an eighth more for 10,000 new alerts; building and escaping a multi-row VALUES
    statement in Python took a third of the time the batched upsert took, and an INSERT from unnest() of one array a
    column five times what staging takes."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        if _has_lz4(cursor):
            # lz4 compresses the raw JSON several times faster than PostgreSQL's default, for about the same size.
            cursor.execute("SET LOCAL default_toast_compression = lz4")
        cursor.execute(
            f"SELECT alert_id FROM {Alert._meta.db_table} WHERE tenant_id = %s AND alert_id = ANY(%s)",  # noqa: S608
            [tenant, ids],
        )
        stored = {alert_id for (alert_id,) in cursor.fetchall()}
        copy_format = _copy_format(cursor)
        new = [row for row in rows if row["alert_id"] not in stored]
        new_keys = _copy_new(cursor, new, copy_format) if new else []
        if new_keys is None:
            # A store running at the same time inserted one of them first: every row takes the upsert.
            new, new_keys = [], []
        staged = [row for row in rows if row["alert_id"] in stored] if new else rows
        inserted, moved, written_keys = len(new), {}, new_keys
        if staged:
            staged_inserted, moved, staged_keys = _upsert_staged(cursor, staged, actor_id, copy_format)
            inserted += staged_inserted
            if len(staged_keys) == len(staged):
                written_keys = new_keys + staged_keys
            else:
                # A richer copy was kept, on the actor it is on: each staged row's own key and actor.
                _note_sources(
                    cursor,
                    f"SELECT id, actor_id, %s, %s, %s FROM {Alert._meta.db_table} "  # noqa: S608
                    "WHERE tenant_id = %s AND alert_id = ANY(%s)",
                    [integration.pk, now, now, tenant, [row["alert_id"] for row in staged]],
                )
        if written_keys:
            # Every one of these rows was written, so each is this actor's: the keys as known, not looked up again.
            _note_sources(
                cursor,
                "SELECT unnest(%s::bigint[]), %s, %s, %s, %s",
                [written_keys, actor_id, integration.pk, now, now],
            )
    return inserted, moved


def _copy_new(cursor, rows, copy_format: tuple[str, list[str] | None]) -> list[int] | None:
    """COPY alerts not stored yet into the table, with keys from its own sequence (a COPY returns none), and return
    those keys; None, with nothing written, when one of them has been stored since it was looked for."""
    table = Alert._meta.db_table
    names = ", ".join(connection.ops.quote_name(column) for column in STORED_COLUMNS)
    cursor.execute(
        "SELECT nextval(sequence) FROM CAST(pg_get_serial_sequence(%s, 'id') AS regclass) AS sequence, "
        "generate_series(1, %s)",
        [table, len(rows)],
    )
    keys = [key for (key,) in cursor.fetchall()]
    options, types = copy_format
    try:
        # The savepoint keeps the transaction usable when the unique constraint refuses the COPY.
        with (
            transaction.atomic(),
            connection.wrap_database_errors,
            cursor.cursor.copy(f"COPY {table} (id, {names}) FROM STDIN{options}") as copy,
        ):
            if types:
                copy.set_types(["bigint", *types])
            for key, row in zip(keys, rows, strict=True):
                copy.write_row([key, *_copied_values(row)])
    except IntegrityError:
        return None
    return keys


def _upsert_staged(
    cursor, rows, actor_id, copy_format: tuple[str, list[str] | None]
) -> tuple[int, dict[tuple[int, int], int], list[int]]:
    """COPY the rows into a temporary table, then one INSERT … SELECT … ON CONFLICT DO UPDATE whose rule keeps a
    richer copy from a poorer one. Returns how many were inserted, the alerts that moved between actors, and the keys
    of every row written."""
    names = ", ".join(connection.ops.quote_name(column) for column in STORED_COLUMNS)
    updated = [COLUMNS[name] for name in UPDATED_FIELDS]
    alert_table = Alert._meta.db_table
    staged = "defender_alert_rows"
    # Every name in these statements is the models' own (no value from outside reaches the SQL text): S608 below.
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{staged}")
    cursor.execute(
        f"CREATE TEMP TABLE {staged} ON COMMIT DROP AS SELECT {names} FROM {alert_table} WITH NO DATA"  # noqa: S608
    )
    options, types = copy_format
    with cursor.cursor.copy(f"COPY {staged} ({names}) FROM STDIN{options}") as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(_copied_values(row))
    # A temporary table has no statistics until analysed: without them the planner joined it to the alerts by a
    # nested loop, and storing 10,000 alerts again took 40 s instead of 2. The join needs only the keys'.
    cursor.execute(f"ANALYZE pg_temp.{staged} (tenant_id, alert_id, actor_id)")
    assignments = ", ".join(f"{connection.ops.quote_name(column)} = EXCLUDED.{column}" for column in updated)
    # xmax is 0 only on a row this statement inserted: an updated row carries the updating transaction's ID.
    cursor.execute(
        f"WITH stored AS (INSERT INTO {alert_table} ({names}) SELECT {names} FROM {staged} "  # noqa: S608
        f"ON CONFLICT (tenant_id, alert_id) DO UPDATE SET {assignments} "
        # Checked on the row as it is once a store running at the same time has committed it.
        f"WHERE {alert_table}.detail_rank <= EXCLUDED.detail_rank RETURNING id, (xmax = 0) AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), array_agg(id) FILTER (WHERE NOT inserted), array_agg(id) "
        "FROM stored"
    )
    inserted, updated_keys, keys = cursor.fetchone()
    moved = _move_sources(cursor, actor_id, updated_keys) if updated_keys else {}
    cursor.execute(f"DROP TABLE pg_temp.{staged}")
    return inserted, moved, keys or []


def _note_sources(cursor, select: str, params: list[Any]) -> None:
    """Insert (or refresh) the sources that ``select`` gives: alert, actor, integration, first and last seen."""
    cursor.execute(
        f"INSERT INTO {AlertSource._meta.db_table} (alert_id, actor_id, integration_id, first_seen_at, last_seen_at) "
        f"{select} ON CONFLICT (alert_id, integration_id) DO UPDATE "
        "SET last_seen_at = EXCLUDED.last_seen_at, actor_id = EXCLUDED.actor_id",
        params,
    )


def _copied_values(row: dict[str, Any]) -> list[Any]:
    return [_json(row[name]) if name in JSON_FIELDS else row[name] for name in STORED_ATTNAMES]


def _move_sources(cursor, actor_id: int, keys: list[int]) -> dict[tuple[int, int], int]:
    """Move to ``actor_id`` the sources of the alerts the upsert just updated (``keys``, now that actor's) that still
    name another actor: alerts matched anew. Returns how many alerts went from which actor to which.

    The sources tell the actor each alert had. They are read in a statement after the upsert, not before it nor in
    it: an alert that another store has inserted and not yet committed is invisible to a read that starts before
    that store commits, and the upsert waits for it (counted before, such an alert stayed on the first actor's count
    and sources)."""
    source_table = AlertSource._meta.db_table
    # The source table a second time, as "before": RETURNING gives the updated row, and it the row as it was.
    cursor.execute(
        f"WITH moved AS (UPDATE {source_table} source SET actor_id = %s FROM {source_table} before "  # noqa: S608
        "WHERE source.alert_id = ANY(%s) AND source.actor_id <> %s AND before.id = source.id "
        "RETURNING before.actor_id AS was_on, source.alert_id) "
        "SELECT was_on, count(DISTINCT alert_id) FROM moved GROUP BY was_on",
        [actor_id, keys, actor_id],
    )
    return {(was_on, actor_id): count for was_on, count in cursor.fetchall()}


_LZ4: dict[str, bool] = {}


def _has_lz4(cursor) -> bool:
    """Whether this PostgreSQL server was built with lz4 (most are; a build without it refuses the setting)."""
    if connection.alias not in _LZ4:
        cursor.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")
        _LZ4[connection.alias] = bool(cursor.fetchone()[0])
    return _LZ4[connection.alias]


def _copy_format(cursor) -> tuple[str, list[str] | None]:
    """How a COPY sends the stored columns: binary, with each column's own type (the server reads binary values by
    the column's type, so an integer must be sent as wide as its column) and the JSON columns as text, which is
    json's binary form; a fifth less of the server's time than text, no timestamp or number parsed. Text while a
    JSON column is still jsonb (code deployed before its migration ran), whose binary form is not its text. Asked of
    the catalog once a store (a fraction of a millisecond), before any COPY (a connection copying answers nothing
    else), so that a migration is seen by a process already running."""
    cursor.execute(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = %s::regclass",
        [Alert._meta.db_table],
    )
    types = dict(cursor.fetchall())
    if any(types[COLUMNS[name]] != "json" for name in JSON_FIELDS):
        return "", None
    return " (FORMAT BINARY)", ["text" if types[column] == "json" else types[column] for column in STORED_COLUMNS]


def _json(value: Any) -> str:
    """JSON text for a JSON column. orjson refuses integers past 64 bits, which JSON and PostgreSQL allow."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, default=_evidence_fields)


def _evidence_fields(value: Any) -> dict[str, Any]:
    if isinstance(value, services_alerts.Evidence):
        return services_alerts.evidence_to_fields(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _instance(row: dict[str, Any]) -> Alert:
    """The model instance of a row, for bulk_create: its JSONField encodes plain values, not Evidence."""
    evidence = [
        _evidence_fields(entry) if isinstance(entry, services_alerts.Evidence) else entry for entry in row["evidence"]
    ]
    return Alert(**{**row, "evidence": evidence})


def _row(actor, integration, alert, now, clean=False):
    """One alert's column values, by attribute name; the evidence as it came (orjson encodes the dataclasses)."""
    severity = alert.severity if alert.severity in SEVERITIES else Alert.Severity.UNSPECIFIED
    status = alert.status if alert.status in STATUSES else Alert.Status.UNKNOWN
    fit = _fit_clean if clean else _fit
    evidence = alert.evidence
    if clean:
        evidence = storable_json([services_alerts.evidence_to_fields(entry) for entry in evidence])
    return {
        "tenant_id": tenant_key(integration),
        "actor_id": actor.pk,
        "alert_id": fit(alert.id, "alert_id"),
        "title": fit(alert.title, "title"),
        "severity": severity,
        "severity_rank": Alert.SEVERITY_RANKS[severity],
        "detail_rank": 0 if integration.api_flavour == presets.SIEM else 1,
        "status": status,
        "category": fit(alert.category, "category"),
        "detection_source": fit(alert.detection_source, "detection_source"),
        "created": alert.created,
        "first_event": alert.first_event,
        "last_event": alert.last_event,
        "last_update": alert.last_update,
        "resolved": alert.resolved,
        "machine_name": fit(alert.machine_name, "machine_name"),
        "matched_name": fit(alert.matched_name, "matched_name"),
        "mitre_techniques": storable_json(list(alert.mitre_techniques)) if clean else list(alert.mitre_techniques),
        **{
            name: fit(getattr(alert, name), name)
            for name in services_alerts.ALERT_TEXT_LENGTHS
            if name != "incident_url"
        },
        "incident_url": safe_portal_url(fit(alert.incident_url, "incident_url"), "incident_url"),
        "portal_url": safe_portal_url(fit(alert.portal_url, "portal_url")),
        "evidence": evidence,
        "raw": storable_json(alert.raw) if clean else alert.raw,
        "first_seen_at": now,
        "updated_at": now,
    }


def safe_portal_url(url, field_name="portal_url"):
    """The portal link only when it is an https URL that fits: a javascript: or data: link from an API answer (or a
    remote node) must never reach an href on the actor's page."""
    url = (url or "").strip()
    if HTTPS_WITH_HOST.match(url) is None or len(url) > _max_length(field_name):
        return ""
    return url


def _max_length(field_name):
    return MAX_LENGTHS[field_name]


def _fit(value, field_name):
    """Cut a value to its column: PostgreSQL refuses an over-long string where SQLite would keep it."""
    return text(value, _max_length(field_name))


def _fit_clean(value, field_name):
    return storable_text(_fit(value, field_name))


def stored_alerts(actor):
    """The actor's stored alerts, newest first, with the integrations that returned each (one query for the page) and
    without the evidence and raw JSON the table never shows."""
    sources = AlertSource.objects.select_related("integration").only(
        "alert", "integration__name", "first_seen_at", "last_seen_at"
    )
    return (
        Alert.objects.filter(actor=actor)
        .defer(*DETAIL_ONLY)
        .prefetch_related(Prefetch("sources", queryset=sources.order_by("integration__name")))
        .order_by("-created", "-pk")
    )


def stored_alert(actor, pk):
    """One of the actor's alerts with everything stored about it, for its detail page; None when it is not theirs."""
    sources = AlertSource.objects.select_related("integration").order_by("integration__name")
    found = Alert.objects.filter(actor=actor, pk=pk).prefetch_related(Prefetch("sources", queryset=sources))
    return found.first()


def last_fetches(actor):
    return AlertFetch.objects.filter(actor=actor).select_related("integration").order_by("integration__name")
