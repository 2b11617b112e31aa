"""The alerts kept for actors: what each integration answered, stored, and read back for the actor's page.

The table, its filters and the CSV export read the stored rows, so they never call Defender again (asking is
``defender.operations.alerts``). An alert is one row per tenant and alert ID: a Defender API, a Graph and a SIEM
integration of one tenant return the same alert, and the row names each of them (AlertSource, with when each first and
last returned it). An answer that cannot be stored is recorded as a failed ask for its integration, in its
own transaction, and never touches what the others stored.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.db import DatabaseError, transaction
from django.db.models import Prefetch
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


def tenant_key(integration):
    """The tenant an integration's alerts belong to: its tenant ID as typed, compared without case (a GUID)."""
    return integration.tenant_id.strip().lower()


def store_alerts(actor, integration, alerts, now=None):
    """Insert new alerts and update the ones already stored (keyed by tenant and Defender's alert ID), and note that
    this integration returned each of them."""
    now = now or timezone.now()
    unique = {}
    for alert in alerts:
        # One alert can come back twice (two machine records for the same endpoint); one row each, the first wins.
        unique.setdefault(alert.id, alert)
    tenant = tenant_key(integration)
    try:
        with transaction.atomic():
            _upsert(integration, tenant, [_row(actor, integration, alert, now) for alert in unique.values()], now)
    except (DatabaseError, ValueError, RecursionError):
        # The database refused a value as the API sent it (PostgreSQL keeps no NUL character, no database a lone
        # surrogate, and JSON nested hundreds deep overflows its encoder): store copies any database takes. Making
        # every value storable first would cost a quarter of the time storing takes, for answers that rarely need it.
        logger.info("Storing the alerts of integration %s again with their text cleaned", integration.pk)
        with transaction.atomic():
            rows = [_row(actor, integration, alert, now, clean=True) for alert in unique.values()]
            _upsert(integration, tenant, rows, now)
    return len(unique)


def _upsert(integration, tenant, rows, now):
    ids = [row.alert_id for row in rows]
    if integration.api_flavour == presets.SIEM:
        # The SIEM exporter's copy of an alert is its poorest (no status, no activity times, no classification, no
        # detection status): when a Defender API or Graph integration of the tenant returned it, the row keeps
        # theirs and only notes that this one returned it too.
        richer = set()
        for start in range(0, len(ids), BATCH_SIZE):
            found = Alert.objects.filter(
                tenant_id=tenant,
                alert_id__in=ids[start : start + BATCH_SIZE],
                sources__integration__api_flavour__in=[presets.MDE, presets.GRAPH],
            )
            richer.update(found.values_list("alert_id", flat=True))
        rows = [row for row in rows if row.alert_id not in richer]
    Alert.objects.bulk_create(
        rows,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["tenant_id", "alert_id"],
        update_fields=UPDATED_FIELDS,
    )
    # Read the keys back rather than trust bulk_create to set them: not every database returns them on a conflict.
    sources = []
    for start in range(0, len(ids), BATCH_SIZE):
        keys = Alert.objects.filter(tenant_id=tenant, alert_id__in=ids[start : start + BATCH_SIZE])
        sources += [
            AlertSource(alert_id=pk, integration=integration, first_seen_at=now, last_seen_at=now)
            for pk in keys.values_list("pk", flat=True)
        ]
    AlertSource.objects.bulk_create(
        sources,
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["alert", "integration"],
        update_fields=["last_seen_at"],
    )


def _row(actor, integration, alert, now, clean=False):
    severity = alert.severity if alert.severity in Alert.Severity.values else Alert.Severity.UNSPECIFIED
    status = alert.status if alert.status in Alert.Status.values else Alert.Status.UNKNOWN
    fit = _fit_clean if clean else _fit
    evidence = [services_alerts.evidence_to_fields(entry) for entry in alert.evidence]
    return Alert(
        tenant_id=tenant_key(integration),
        actor=actor,
        alert_id=fit(alert.id, "alert_id"),
        title=fit(alert.title, "title"),
        severity=severity,
        severity_rank=Alert.SEVERITY_RANKS[severity],
        status=status,
        category=fit(alert.category, "category"),
        detection_source=fit(alert.detection_source, "detection_source"),
        created=alert.created,
        first_event=alert.first_event,
        last_event=alert.last_event,
        last_update=alert.last_update,
        resolved=alert.resolved,
        machine_name=fit(alert.machine_name, "machine_name"),
        matched_name=fit(alert.matched_name, "matched_name"),
        mitre_techniques=storable_json(list(alert.mitre_techniques)) if clean else list(alert.mitre_techniques),
        **{
            name: fit(getattr(alert, name), name)
            for name in services_alerts.ALERT_TEXT_LENGTHS
            if name != "incident_url"
        },
        incident_url=safe_portal_url(fit(alert.incident_url, "incident_url"), "incident_url"),
        portal_url=safe_portal_url(fit(alert.portal_url, "portal_url")),
        evidence=storable_json(evidence) if clean else evidence,
        raw=storable_json(alert.raw) if clean else alert.raw,
        first_seen_at=now,
        updated_at=now,
    )


def safe_portal_url(url, field_name="portal_url"):
    """The portal link only when it is an https URL that fits: a javascript: or data: link from an API answer (or a
    remote node) must never reach an href on the actor's page."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or len(url) > _max_length(field_name):
        return ""
    return url


def _max_length(field_name):
    return Alert._meta.get_field(field_name).max_length


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
