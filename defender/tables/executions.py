"""The Executions list."""

import django_tables2 as tables
from django.utils.html import format_html, format_html_join

from defender.models import Execution, Outcome
from defender.tables.alerts import utc_time
from defender.tables.paging import ConsoleTable

# Bootstrap's colours per outcome, the same on every page that shows one.
OUTCOME_BADGES = {
    Outcome.PREVENTED: "text-bg-success",
    Outcome.ALERTED: "text-bg-primary",
    Outcome.DETECTED: "text-bg-info",
    Outcome.MISSED: "text-bg-danger",
    Outcome.PENDING: "text-bg-secondary",
}
OUTCOME_ORDER = [Outcome.PREVENTED, Outcome.ALERTED, Outcome.DETECTED, Outcome.MISSED, Outcome.PENDING]


def outcome_badge(outcome: str, count: int | None = None):
    label = Outcome(outcome).label
    return format_html(
        '<span class="badge {}">{}{}</span>', OUTCOME_BADGES[Outcome(outcome)], label, f" {count}" if count else ""
    )


def outcome_counts(record) -> str:
    """The badges of a row's procedure counts (annotated on the row by the view: one query for the page)."""
    shown = [(o, getattr(record, f"n_{o.value}", 0)) for o in OUTCOME_ORDER]
    return format_html_join(" ", "{}", ((outcome_badge(o, n),) for o, n in shown if n)) or "—"


class ExecutionTable(ConsoleTable):
    external_id = tables.Column(
        verbose_name="Execution", linkify=("defender:execution-detail", {"pk": tables.A("pk")}), empty_values=()
    )
    actor = tables.Column(linkify=("defender:actor-detail", {"pk": tables.A("actor_id")}), order_by="actor__name")
    source = tables.Column()
    imported_at = tables.Column(verbose_name="Imported")
    outcomes = tables.Column(verbose_name="Procedures", empty_values=(), orderable=False)

    class Meta:
        model = Execution
        fields = ()
        order_by = "-imported_at"
        empty_text = "No executions yet: import an ATTiRe log or record a procedure."
        attrs = {"class": "table table-hover align-middle"}

    def render_external_id(self, value, record):
        return value or f"Execution {record.pk}"

    def render_imported_at(self, value, record):
        who = record.imported_by.get_username() if record.imported_by else ""
        return format_html("{} {}", utc_time(value), f"by {who}" if who else "")

    def render_outcomes(self, record):
        return outcome_counts(record)
