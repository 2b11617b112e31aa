"""Export CSV: an actor's stored alerts as a spreadsheet reads them, streamed so that memory stays flat.

Every cell a spreadsheet would run as a formula is neutralised (OWASP: CSV injection): the alerts' text comes from
Defender, or from a remote node, and is not ours to trust.
"""

import csv
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.db.models import Aggregate, CharField, QuerySet
from django.http import StreamingHttpResponse
from django.utils.text import slugify

from defender.models import Actor, Alert, Integration
from defender.services.alerts import EVIDENCE_FIELDS

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


def csv_response(actor: Actor, alerts: QuerySet[Alert]) -> StreamingHttpResponse:
    """A download of these alerts, in the order the queryset has (the table's), named after the actor."""
    response = StreamingHttpResponse(csv_lines(alerts), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{slugify(actor.name) or "actor"}-alerts.csv"'
    return response


def neutralise(value: Any) -> str:
    """Prefix a quote to a cell a spreadsheet would run as a formula, so it shows as text.

    Spreadsheets trim leading spaces and line feeds before looking for a formula, and read the full-width and small
    forms (＝ ＋ － ＠, ﹦ ﹢ ﹣ ﹫) as the ASCII ones; NFKC folds those onto = + - @ (only a non-ASCII first character
    needs folding: the export calls this for every cell of every row).
    """
    text = "" if value is None else str(value)
    if not text:
        return text
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    first = text.lstrip()[:1]
    if first in FORMULA_STARTS or (
        first and not first.isascii() and unicodedata.normalize("NFKC", first) in FORMULA_STARTS
    ):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


# The columns the export reads, in one values_list: no model instance, no subquery per row.
COLUMNS = (
    "pk",
    "created",
    "severity",
    "title",
    "category",
    "status",
    "detection_source",
    "mitre_techniques",
    "machine_name",
    "matched_name",
    "alert_id",
    "portal_url",
    "first_event",
    "last_event",
    "last_update",
    "resolved",
    "device_id",
    "incident_id",
    "incident_url",
    "threat_family",
    "threat_name",
    "detector_id",
    "classification",
    "determination",
    "assigned_to",
    "service_source",
    "product_name",
    "evidence",
)
STATUS_LABELS = dict(Alert.Status.choices)


def csv_lines(alerts: QuerySet[Alert]) -> Iterator[str]:
    """The CSV of these alerts, line by line, streamed from a server-side cursor (PostgreSQL; SQLite reads in chunks).

    The integrations' names are read once; which integrations returned each alert comes with it, as their keys.
    At about 85 µs a row (README: Benchmarks) a million rows would outlast gunicorn's 60 s timeout: exports that
    large are not handled yet.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    names = {str(pk): name for pk, name in Integration.objects.values_list("pk", "name")}
    rows = alerts.prefetch_related(None).annotate(source_ids=_JoinedIds("sources__integration_id"))
    for row in rows.values_list(*COLUMNS, "source_ids").iterator(chunk_size=CHUNK_SIZE):
        returned = "; ".join(sorted(names.get(pk, "") for pk in (row[-1] or "").split(",") if pk))
        yield writer.writerow([neutralise(cell) for cell in _cells(row[:-1], returned)])


class _JoinedIds(Aggregate):
    """The integrations' keys joined by commas (SQLite's GROUP_CONCAT, PostgreSQL's STRING_AGG): a join grouped
    with the alerts' own query, not a subquery per row, so the export makes the same few queries however long."""

    function = "GROUP_CONCAT"
    template = "%(function)s(%(expressions)s, ',')"
    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler, connection, function="STRING_AGG", template="%(function)s(%(expressions)s::text, ',')"
        )


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


def _cells(row: tuple[Any, ...], integration_names: str) -> tuple[Any, ...]:
    (
        _,
        created,
        severity,
        title,
        category,
        status,
        detection_source,
        mitre_techniques,
        machine_name,
        matched_name,
        alert_id,
        portal_url,
        first_event,
        last_event,
        last_update,
        resolved,
        *texts,
        evidence,
    ) = row
    return (
        _utc(created),
        severity,
        title,
        category,
        STATUS_LABELS.get(status, status),
        detection_source,
        "; ".join(str(technique) for technique in mitre_techniques or ()),
        machine_name,
        matched_name,
        integration_names,
        alert_id,
        portal_url,
        _utc(first_event),
        _utc(last_event),
        _utc(last_update),
        _utc(resolved),
        *texts,
        evidence_text(evidence),
    )
