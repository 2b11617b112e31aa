"""The stored alerts of one actor, as a django-tables2 table."""

from datetime import UTC

import django_tables2 as tables
from django.utils.html import format_html, format_html_join

from defender.alert_store import safe_portal_url
from defender.models import Alert
from defender.tables.paging import ConsoleTable

SEVERITY_BADGES = {
    Alert.Severity.HIGH: "text-bg-danger",
    Alert.Severity.MEDIUM: "text-bg-warning",
    Alert.Severity.LOW: "text-bg-info",
    Alert.Severity.INFORMATIONAL: "text-bg-secondary",
}


def utc_time(moment):
    """A <time> the browser rewrites into the viewer's zone (alerts.js); UTC text without JavaScript."""
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    iso = moment.isoformat().replace("+00:00", "Z")
    return format_html(
        '<time class="text-nowrap" datetime="{}" title="{}">{} UTC</time>',
        iso,
        iso,
        moment.strftime("%Y-%m-%d %H:%M:%S"),
    )


class SortedColumn(tables.Column):
    """Sorts by its order_by fields, then newest first: rows that tie keep one order across pages and in the CSV."""

    def order(self, queryset, is_descending):
        keys = [f"-{field.bare}" if is_descending else field.bare for field in self.order_by]
        return queryset.order_by(*keys, "-created", "-pk"), True


class AlertTable(ConsoleTable):
    created = SortedColumn(verbose_name="Created", order_by="created")
    # By rank, not by name: alphabetically High would sort between Informational and Low.
    severity = SortedColumn(order_by="severity_rank")
    title = SortedColumn(order_by="title")
    category = SortedColumn(order_by="category")
    status = SortedColumn(order_by="status")
    detection_source = SortedColumn(verbose_name="Detection source", order_by="detection_source")
    mitre_techniques = tables.Column(verbose_name="MITRE techniques", orderable=False)
    machine_name = SortedColumn(verbose_name="Machine", order_by="machine_name")
    integration = SortedColumn(verbose_name="Integration", accessor="integration__name", order_by="integration__name")
    portal_url = tables.Column(verbose_name="Defender portal", orderable=False)

    class Meta:
        model = Alert
        fields = ()
        order_by = "-created"
        empty_text = "No alerts stored for this actor yet."
        template_name = "defender/actors/_alert_table.html"
        attrs = {"class": "table table-hover table-sm align-middle alerts-table", "id": "alerts-table"}

    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.actor = actor

    def render_created(self, value):
        return utc_time(value)

    def render_severity(self, value):
        badge = SEVERITY_BADGES.get(value, "text-bg-light border")
        return format_html('<span class="badge {}">{}</span>', badge, value)

    def render_status(self, record):
        return record.get_status_display()

    def render_mitre_techniques(self, value):
        badge = '<span class="badge text-bg-light border fw-normal">{}</span>'
        return format_html_join(" ", badge, ((technique,) for technique in value))

    def render_machine_name(self, value, record):
        matched_by = record.matched_by(self.actor)
        how = f"matched {matched_by} {record.matched_name}" if matched_by else f"matched {record.matched_name}"
        return format_html(
            '<span class="text-nowrap">{}</span><br><small class="text-body-secondary">{}</small>', value, how
        )

    def render_portal_url(self, value):
        if not safe_portal_url(value):
            return "—"
        return format_html(
            '<a class="text-nowrap" href="{}" target="_blank" rel="noopener noreferrer">'
            'Open<span class="visually-hidden"> in Defender</span>'
            ' <i class="bi bi-box-arrow-up-right" aria-hidden="true"></i></a>',
            value,
        )
