"""Get alerts: ask each chosen integration for an actor's alerts and keep what came back.

The table, its filters and the CSV export read the stored rows, so only this module talks to Defender. One integration
failing (a wrong secret, a closed port, a key that no longer opens the secret) is recorded for that integration and
never stops the others.
"""

import csv
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from defender.destinations import REFUSED_SECRETS
from defender.models import Alert, AlertFetch
from defender.services.alerts import alerts_for_actor
from defender.services.errors import DefenderError

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
# Integrations are asked side by side so that the person waiting does not wait for each in turn; only a handful at
# a time, so that integrations sharing one tenant do not spend its per-minute call budget all at once.
PARALLEL_ASKS = 4
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
    "machine_name",
    "matched_name",
    "mitre_techniques",
    "portal_url",
    "raw",
    "updated_at",
]


@dataclass(frozen=True)
class Outcome:
    """What one integration answered, before it is stored."""

    integration: object
    ok: bool
    message: str
    since: object
    until: object
    tried_names: tuple = ()
    alerts: tuple = ()


def fetch_alerts(actor, integrations, since, until):
    """Ask every integration for the actor's alerts between since and until, store them, and record each ask.

    Returns the AlertFetch rows, one per integration, in the order given.
    """
    names = actor.hostnames()
    prepared, outcomes = [], {}
    for integration in integrations:
        try:
            # Decrypting (and checking where the secret may go) happens here, before any worker starts.
            prepared.append((integration, integration.to_settings()))
        except REFUSED_SECRETS as error:
            outcomes[integration.pk] = Outcome(integration, False, str(error), since, until, tuple(names))
    if prepared:
        with ThreadPoolExecutor(max_workers=min(PARALLEL_ASKS, len(prepared))) as pool:
            asks = [pool.submit(_ask, integration, settings, names, since, until) for integration, settings in prepared]
            for ask in asks:
                outcome = ask.result()
                outcomes[outcome.integration.pk] = outcome
    asked_at = timezone.now()
    with transaction.atomic():
        return [record_outcome(actor, outcomes[integration.pk], asked_at) for integration in integrations]


def _ask(integration, settings, names, since, until):
    try:
        result = alerts_for_actor(settings, names, since, until)
    except DefenderError as error:
        return Outcome(integration, False, str(error), since, until, tuple(names))
    except Exception:
        # A defect in one integration's answer must not hide the alerts the others found.
        logger.exception("Getting alerts from integration %s failed unexpectedly", integration.pk)
        message = f"Getting alerts from {integration.name} failed unexpectedly; the server log has the details."
        return Outcome(integration, False, message, since, until, tuple(names))
    window_since, window_until = result.window
    return Outcome(
        integration,
        True,
        result.message,
        window_since,
        window_until,
        tuple(result.tried_names),
        tuple(result.alerts),
    )


def record_outcome(actor, outcome, asked_at):
    """Store what one integration answered (its alerts, if any) and note the ask; used for remote answers too."""
    if outcome.ok:
        store_alerts(actor, outcome.integration, outcome.alerts, asked_at)
    fetch, _ = AlertFetch.objects.update_or_create(
        actor=actor,
        integration=outcome.integration,
        defaults={
            "asked_at": asked_at,
            "since": outcome.since,
            "until": outcome.until,
            "tried_names": list(outcome.tried_names),
            "ok": outcome.ok,
            "message": outcome.message,
            "alert_count": len(outcome.alerts),
        },
    )
    return fetch


def store_alerts(actor, integration, alerts, now=None):
    """Insert new alerts and update the ones already stored (keyed by integration and Defender's alert ID)."""
    now = now or timezone.now()
    rows = {}
    for alert in alerts:
        # One alert can come back twice (two machine records for the same endpoint); one row each, the first wins.
        rows.setdefault(alert.id, _row(actor, integration, alert, now))
    Alert.objects.bulk_create(
        rows.values(),
        batch_size=BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["integration", "alert_id"],
        update_fields=UPDATED_FIELDS,
    )
    return len(rows)


def _row(actor, integration, alert, now):
    severity = alert.severity if alert.severity in Alert.Severity.values else Alert.Severity.UNSPECIFIED
    status = alert.status if alert.status in Alert.Status.values else Alert.Status.UNKNOWN
    return Alert(
        integration=integration,
        actor=actor,
        alert_id=_fit(alert.id, "alert_id"),
        title=_fit(alert.title, "title"),
        severity=severity,
        severity_rank=Alert.SEVERITY_RANKS[severity],
        status=status,
        category=_fit(alert.category, "category"),
        detection_source=_fit(alert.detection_source, "detection_source"),
        created=alert.created,
        first_event=alert.first_event,
        last_event=alert.last_event,
        machine_name=_fit(alert.machine_name, "machine_name"),
        matched_name=_fit(alert.matched_name, "matched_name"),
        mitre_techniques=list(alert.mitre_techniques),
        portal_url=safe_portal_url(alert.portal_url),
        raw=alert.raw,
        first_seen_at=now,
        updated_at=now,
    )


def safe_portal_url(url):
    """The portal link only when it is an https URL that fits: a javascript: or data: link from an API answer (or a
    remote node) must never reach an href on the actor's page."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or len(url) > _max_length("portal_url"):
        return ""
    return url


def _max_length(field_name):
    return Alert._meta.get_field(field_name).max_length


def _fit(value, field_name):
    """Cut a value to its column: PostgreSQL refuses an over-long string where SQLite would keep it."""
    return (value or "")[: _max_length(field_name)]


def stored_alerts(actor):
    """The actor's stored alerts, newest first, without the raw JSON the table never shows."""
    return Alert.objects.filter(actor=actor).select_related("integration").defer("raw").order_by("-created", "-pk")


def last_fetches(actor):
    return AlertFetch.objects.filter(actor=actor).select_related("integration").order_by("integration__name")


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_HEADER = [
    "Created (UTC)",
    "Severity",
    "Title",
    "Category",
    "Status",
    "Detection source",
    "MITRE techniques",
    "Machine name",
    "Matched name",
    "Integration",
    "Alert ID",
    "Defender portal URL",
]


def neutralise(value):
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value):
        return value


def csv_lines(alerts):
    """The CSV of these alerts, line by line, read from the database in chunks so memory stays flat."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for alert in alerts.iterator(chunk_size=2000):
        yield writer.writerow(
            [
                neutralise(cell)
                for cell in (
                    alert.created.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if alert.created else "",
                    alert.severity,
                    alert.title,
                    alert.category,
                    alert.get_status_display(),
                    alert.detection_source,
                    "; ".join(str(technique) for technique in alert.mitre_techniques or ()),
                    alert.machine_name,
                    alert.matched_name,
                    alert.integration.name,
                    alert.alert_id,
                    alert.portal_url,
                )
            ]
        )
