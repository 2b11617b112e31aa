"""Export CSV: an actor's stored alerts as a spreadsheet reads them, streamed so that memory stays flat.

Every cell a spreadsheet would run as a formula is neutralised (OWASP: CSV injection): the alerts' text comes from
Defender, or from a remote node, and is not ours to trust.
"""

import csv
import dataclasses
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.db.models import Aggregate, CharField, OuterRef, QuerySet, Subquery
from django.http import StreamingHttpResponse
from django.utils.text import slugify

from defender.models import Actor, Alert, AlertSource
from defender.services.alerts import Evidence

# A spreadsheet runs a cell that starts with one of these as a formula.
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
    "First event (UTC)",
    "Last event (UTC)",
    "Last update (UTC)",
    "Resolved (UTC)",
    "Device ID",
    "Incident ID",
    "Incident URL",
    "Threat family",
    "Threat name",
    "Detector ID",
    "Classification",
    "Determination",
    "Assigned to",
    "Service source",
    "Product",
    "Evidence",
]
CHUNK_SIZE = 2000
EVIDENCE_FIELDS = tuple(field.name for field in dataclasses.fields(Evidence))


def csv_response(actor: Actor, alerts: QuerySet[Alert]) -> StreamingHttpResponse:
    """A download of these alerts, in the order the queryset has (the table's), named after the actor."""
    response = StreamingHttpResponse(csv_lines(alerts), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{slugify(actor.name) or "actor"}-alerts.csv"'
    return response


def neutralise(value: Any) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula, so it shows as text.

    Spreadsheets trim leading spaces and line feeds before looking for a formula, and read the full-width and small
    forms (＝ ＋ － ＠, ﹦ ﹢ ﹣ ﹫) as the ASCII ones; NFKC folds those onto = + - @.
    """
    text = "" if value is None else str(value)
    first = text.lstrip()[:1]
    if text.startswith(FORMULA_STARTS) or unicodedata.normalize("NFKC", first) in FORMULA_STARTS:
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def csv_lines(alerts: QuerySet[Alert]) -> Iterator[str]:
    """The CSV of these alerts, line by line, read from the database in chunks."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    # The table leaves the evidence out; the export has it (the raw JSON stays out: it is the detail page's). The
    # integrations' names come in the same query, so the export costs the same few queries however long it is.
    rows = alerts.defer(None).defer("raw").prefetch_related(None).annotate(integration_names=_integration_names())
    for alert in rows.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow([neutralise(cell) for cell in _cells(alert)])


class _JoinedNames(Aggregate):
    """The names joined by "; " (SQLite's GROUP_CONCAT, PostgreSQL's STRING_AGG)."""

    function = "GROUP_CONCAT"
    template = "%(function)s(%(expressions)s, '; ')"
    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, function="STRING_AGG", **extra_context)


def _integration_names() -> Subquery:
    names = AlertSource.objects.filter(alert=OuterRef("pk")).order_by().values("alert")
    return Subquery(names.annotate(names=_JoinedNames("integration__name")).values("names")[:1])


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def evidence_text(evidence: Any) -> str:
    """The evidence in one cell: each entity's filled fields (name=value, comma-separated, in Evidence's order: a
    JSON column need not keep the keys' order), entities split by " | "."""
    entries = evidence if isinstance(evidence, list) else []
    return " | ".join(
        ", ".join(f"{name}={entry[name]}" for name in EVIDENCE_FIELDS if entry.get(name) not in ("", None))
        for entry in entries
        if isinstance(entry, dict)
    )


def _cells(alert: Alert) -> tuple[Any, ...]:
    return (
        _utc(alert.created),
        alert.severity,
        alert.title,
        alert.category,
        alert.get_status_display(),
        alert.detection_source,
        "; ".join(str(technique) for technique in alert.mitre_techniques or ()),
        alert.machine_name,
        alert.matched_name,
        getattr(alert, "integration_names", None) or "",  # annotated by csv_lines
        alert.alert_id,
        alert.portal_url,
        _utc(alert.first_event),
        _utc(alert.last_event),
        _utc(alert.last_update),
        _utc(alert.resolved),
        alert.device_id,
        alert.incident_id,
        alert.incident_url,
        alert.threat_family,
        alert.threat_name,
        alert.detector_id,
        alert.classification,
        alert.determination,
        alert.assigned_to,
        alert.service_source,
        alert.product_name,
        evidence_text(alert.evidence),
    )
