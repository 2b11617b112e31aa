"""The stored alerts of one actor, as a django-tables2 table."""

from datetime import UTC

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

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
    """A <time> the browser rewrites into the viewer's zone (alerts.js); UTC text without JavaScript. The line may
    break between the date and the time, never inside either."""
    if moment is None:
        return "—"
    moment = moment.astimezone(UTC)
    iso = moment.isoformat().replace("+00:00", "Z")
    return format_html(
        '<time datetime="{}" title="{}"><span class="text-nowrap">{}</span> '
        '<span class="text-nowrap">{} UTC</span></time>',
        iso,
        iso,
        moment.strftime("%Y-%m-%d"),
        moment.strftime("%H:%M:%S"),
    )


def breakable_host(name):
    """A host name that may wrap after a dot but never inside a label (ws-fin-07 must not become "ws-" "fin-07")."""
    labels = (name or "").split(".")
    parts = [f"{label}." for label in labels[:-1]] + labels[-1:]
    return format_html_join(mark_safe("<wbr>"), '<span class="text-nowrap">{}</span>', ((part,) for part in parts))


class SortedColumn(tables.Column):
    """Sorts by its order_by fields, then newest first: rows that tie keep one order across pages and in the CSV."""

    def order(self, queryset, is_descending):
        keys = [f"-{field.bare}" if is_descending else field.bare for field in self.order_by]
        return queryset.order_by(*keys, "-created", "-pk"), True


class AlertTable(ConsoleTable):
    """The columns that fit a laptop screen; the rest of an alert opens under its title (and, chosen, as columns)."""

    OPTIONAL = {"category": "Category", "detection_source": "Detection source", "mitre_techniques": "MITRE techniques"}

    created = SortedColumn(verbose_name="Created", order_by="created")
    # By rank, not by name: alphabetically High would sort between Informational and Low.
    severity = SortedColumn(order_by="severity_rank")
    title = SortedColumn(order_by="title")
    category = SortedColumn(order_by="category")
    detection_source = SortedColumn(verbose_name="Detection source", order_by="detection_source")
    mitre_techniques = tables.Column(verbose_name="MITRE techniques", orderable=False)
    status = SortedColumn(order_by="status")
    machine_name = SortedColumn(verbose_name="Machine", order_by="machine_name")
    # Every integration that returned the alert (prefetched with the page); not sortable, an alert may have several.
    integration = tables.Column(verbose_name="Integration", accessor="pk", orderable=False)
    portal_url = tables.Column(verbose_name="Defender", orderable=False)

    class Meta:
        model = Alert
        fields = ()
        order_by = "-created"
        empty_text = "No alerts stored for this actor yet."
        template_name = "defender/actors/_alert_table.html"
        attrs = {"class": "table table-hover table-sm align-middle alerts-table", "id": "alerts-table"}

    def __init__(self, alerts, *args, actor, columns=(), exclude=(), **kwargs):
        self.shown_optional = [name for name in self.OPTIONAL if name in columns]
        hidden = [name for name in self.OPTIONAL if name not in self.shown_optional]
        super().__init__(alerts, *args, exclude=[*exclude, *hidden], **kwargs)
        self.actor = actor
        self.alerts = alerts

    def sorted_alerts(self):
        """Every alert the table shows, all its pages, sorted as it sorts them (by each column's own order, as
        django-tables2 applies it): what Export CSV writes."""
        alerts = self.alerts
        for alias in self.order_by or ():
            alerts, _ = self.columns[alias.bare].order(alerts, alias.is_descending)
        return alerts

    def render_created(self, value):
        return utc_time(value)

    def render_severity(self, value):
        badge = SEVERITY_BADGES.get(value, "text-bg-light border")
        return format_html('<span class="badge {}">{}</span>', badge, value)

    def render_title(self, value, record):
        # A <details> needs no script and opens with the keyboard: the row's other facts, whatever the screen width.
        activity = format_html("{} to {}", utc_time(record.first_event), utc_time(record.last_event))
        threat = " / ".join(name for name in (record.threat_family, record.threat_name) if name)
        verdict = " / ".join(name for name in (record.classification, record.determination) if name)
        facts = (
            ("Category", record.category or "—"),
            ("Detection source", record.detection_source or "—"),
            ("MITRE techniques", self.render_mitre_techniques(record.mitre_techniques) or "—"),
            ("Activity", activity),
            ("Last update", utc_time(record.last_update)),
            ("Threat", threat or "—"),
            ("Classification", verdict or "—"),
            ("Incident", record.incident_id or "—"),
            ("Alert ID", record.alert_id),
        )
        # The evidence and the raw JSON are on the alert's own page, read only when it is opened.
        detail = reverse("defender:actor-alert", args=[self.actor.pk, record.pk])
        return format_html(
            '<details class="alert-more"><summary>{}</summary><dl class="alert-facts">{}</dl>'
            '<a class="alert-detail-link" href="{}">Evidence, every field and the raw JSON</a></details>',
            value,
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", facts),
            detail,
        )

    def render_integration(self, record):
        return format_html_join(
            mark_safe("<br>"), "{}", ((source.integration.name,) for source in record.sources.all())
        )

    def render_status(self, record):
        return record.get_status_display()

    def render_mitre_techniques(self, value):
        badge = '<span class="badge text-bg-light border fw-normal">{}</span>'
        return format_html_join(" ", badge, ((technique,) for technique in value or ()))

    def render_machine_name(self, value, record):
        matched_by = record.matched_by(self.actor)
        how = f"matched {matched_by}" if matched_by else "matched"
        return format_html(
            '{}<br><small class="text-body-secondary">{} <span class="text-nowrap">{}</span></small>',
            breakable_host(value),
            how,
            record.matched_name,
        )

    def render_portal_url(self, value):
        if not safe_portal_url(value):
            return "—"
        return format_html(
            '<a class="text-nowrap portal-link" href="{}" target="_blank" rel="noopener noreferrer">'
            'Open<span class="visually-hidden"> in Defender</span>'
            ' <i class="bi bi-box-arrow-up-right" aria-hidden="true"></i></a>',
            value,
        )
