"""Export CSV: an actor's stored alerts as a spreadsheet reads them, streamed so that memory stays flat.

Every cell a spreadsheet would run as a formula is neutralised (OWASP: CSV injection): the alerts' text comes from
Defender, or from a remote node, and is not ours to trust.
"""

import csv
import string
import unicodedata
from collections.abc import Iterator
from typing import Any

import orjson
from django.db.models import Aggregate, CharField, Func, QuerySet, TextField
from django.db.models.functions import Cast
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
# Lines sent to the client at a time (about 100 KiB): one write and one chunk of the response each, not one a line.
LINES_A_WRITE = 200
# First characters a spreadsheet never reads as a formula start, even after trimming: most cells begin with one.
PLAIN_STARTS = frozenset(string.ascii_letters + string.digits + "!\"#$%&'()*,./:;<>?[\\]^_`{|}~")


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
    if not text or text[0] in PLAIN_STARTS:
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
TIMES = ("created", "first_event", "last_event", "last_update", "resolved")
JSON_COLUMNS = ("mitre_techniques", "evidence")


def csv_lines(alerts: QuerySet[Alert]) -> Iterator[str]:
    """The CSV of these alerts, line by line, streamed from a server-side cursor (PostgreSQL; SQLite reads in chunks).

    The integrations' names are read once; which integrations returned each alert comes with it, as their keys.
    gunicorn's gthread worker keeps telling its arbiter it is alive while a thread streams, so a long export is not
    cut by the worker timeout (tests/test_production.py proves it on a real gunicorn).
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    names = {str(pk): name for pk, name in Integration.objects.values_list("pk", "name")}
    rows = alerts.prefetch_related(None).annotate(
        source_ids=_JoinedIds("sources__integration_id"),
        **{f"{name}_text": UtcText(name) for name in TIMES},
        # The JSON as text, decoded by orjson below: Django's JSONField decodes with the json module.
        **{f"{name}_text": Cast(name, TextField()) for name in JSON_COLUMNS},
    )
    columns = [f"{name}_text" if name in TIMES or name in JSON_COLUMNS else name for name in COLUMNS]
    lines = []
    for row in rows.values_list(*columns, "source_ids").iterator(chunk_size=CHUNK_SIZE):
        returned = "; ".join(sorted(names.get(pk, "") for pk in (row[-1] or "").split(",") if pk))
        lines.append(writer.writerow(_cells(row[:-1], returned)))
        if len(lines) == LINES_A_WRITE:
            yield "".join(lines)
            lines = []
    if lines:
        yield "".join(lines)


class UtcText(Func):
    """A time as the export writes it (UTC, to the second), formatted by the database: parsing each time into a
    datetime only to format it again took a third of the export's time."""

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra_context):
        return self.as_sql(
            compiler, connection, template="to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
        )

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite keeps Django's times as UTC text; datetime() writes them as YYYY-MM-DD HH:MM:SS.
        return self.as_sql(compiler, connection, template="datetime(%(expressions)s)")


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


def _decoded(value: str | None) -> Any:
    return orjson.loads(value) if value else None


def evidence_text(evidence: Any) -> str:
    """The evidence in one cell: each entity's filled fields (name=value, comma-separated, in Evidence's order: a
    JSON column need not keep the keys' order), entities split by " | "."""
    entries = evidence if isinstance(evidence, list) else []
    return " | ".join(
        ", ".join(f"{name}={entry[name]}" for name in EVIDENCE_FIELDS if entry.get(name) not in ("", None))
        for entry in entries
        if isinstance(entry, dict)
    )


def _cells(row: tuple[Any, ...], integration_names: str) -> list[str]:
    """One CSV row. The times, severity and status are the export's own text; everything else came from Defender
    (or a node) and is neutralised."""
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
    return [
        created or "",
        severity,
        neutralise(title),
        neutralise(category),
        STATUS_LABELS.get(status, status),
        neutralise(detection_source),
        neutralise("; ".join(str(technique) for technique in _decoded(mitre_techniques) or ())),
        neutralise(machine_name),
        neutralise(matched_name),
        neutralise(integration_names),
        neutralise(alert_id),
        neutralise(portal_url),
        first_event or "",
        last_event or "",
        last_update or "",
        resolved or "",
        *(neutralise(value) for value in texts),
        neutralise(evidence_text(_decoded(evidence))),
    ]
