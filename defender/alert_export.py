"""Export CSV: an actor's stored alerts as a spreadsheet reads them, streamed so that memory stays flat.

Every cell a spreadsheet would run as a formula is neutralised (OWASP: CSV injection): the alerts' text comes from
Defender, or from a remote node, and is not ours to trust.
"""

import csv
import unicodedata
from collections.abc import Iterator
from datetime import UTC
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.text import slugify

from defender.models import Actor, Alert

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
    for alert in alerts.iterator(chunk_size=CHUNK_SIZE):
        yield writer.writerow([neutralise(cell) for cell in _cells(alert)])


def _cells(alert: Alert) -> tuple[Any, ...]:
    return (
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
