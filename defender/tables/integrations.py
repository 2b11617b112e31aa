"""The Settings > Integrations table.

Cells are rendered by methods, not per-row templates: a template per cell per row cost more than the page's whole
budget at 50 rows. The markup is the templates' (``_health_badge.html``, ``_test_badge.html``, ``_row_actions.html``
stay for the htmx swaps that render one integration).
"""

import django_tables2 as tables
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from defender.models import HealthState, Integration
from defender.tables.alerts import utc_time
from defender.tables.paging import ConsoleTable


class IntegrationTable(ConsoleTable):
    name = tables.Column(order_by=("name",))
    host = tables.Column(verbose_name="Host", order_by=("host", "port"))
    location = tables.Column(order_by=("location", "remote_node__name"))
    enabled = tables.BooleanColumn(yesno="Yes,No")
    proxy_rule = tables.Column(verbose_name="Proxy", default="None")
    # Read from the row itself (the fields after_test keeps): no query per row.
    state = tables.Column(
        verbose_name="State", accessor="health_state", order_by=("health_state", "-consecutive_failures")
    )
    last_test = tables.Column(
        verbose_name="Last Test", accessor="last_test_at", order_by=("last_test_at",), empty_values=()
    )
    actions = tables.Column(
        verbose_name="", accessor="pk", orderable=False, attrs={"td": {"class": "text-end text-nowrap row-actions"}}
    )

    class Meta:
        model = Integration
        fields = (
            "name",
            "kind",
            "location",
            "api_flavour",
            "host",
            "enabled",
            "proxy_rule",
            "state",
            "last_test",
            "actions",
        )
        attrs = {"class": "table table-hover align-middle"}
        row_attrs = {"id": lambda record: f"integration-{record.pk}"}
        empty_text = "No integrations yet: add one with Add Integration."

    def render_name(self, record):
        link = format_html('<a href="{}">{}</a>', reverse("defender:integration-detail", args=[record.pk]), record.name)
        warning = record.secret_expiry_warning
        if not warning:
            return link
        expired = record.secret_days_left < 0
        return format_html(
            '{} <span class="badge {}" title="{}">{}</span>',
            link,
            "text-bg-danger" if expired else "text-bg-warning",
            warning,
            "Secret expired" if expired else "Secret expires soon",
        )

    def render_host(self, record):
        return f"{record.host}:{record.port}"

    def render_location(self, record):
        if record.remote_node is None:
            return record.get_location_display()
        return format_html(
            "{} <small class='text-body-secondary'>via {}</small>",
            record.get_location_display(),
            record.remote_node.name,
        )

    def render_state(self, record):
        failures = record.consecutive_failures
        if record.health_state == HealthState.DOWN:
            return format_html(
                '<span class="badge text-bg-danger" title="{} Tests failed in a row">Down</span>', failures
            )
        if failures:
            return format_html(
                '<span class="badge text-bg-warning" title="{0} of {1} failed Tests in a row before it counts as down">'
                "Failing ({0} of {1})</span>",
                failures,
                record.notify_after_failures,
            )
        if record.health_state == HealthState.UP:
            return mark_safe('<span class="badge text-bg-success">Up</span>')
        return mark_safe('<span class="badge text-bg-secondary">Not tested</span>')

    def render_last_test(self, record):
        if not record.last_test_at:
            inner = mark_safe('<span class="text-body-secondary">Never tested</span>')
        else:
            inner = format_html(
                '<span class="badge badge-test {}" title="{}">{}</span> <small class="text-body-secondary">{}</small>',
                "text-bg-success" if record.last_test_ok else "text-bg-danger",
                record.last_test_summary,
                "Passed" if record.last_test_ok else "Failed",
                utc_time(record.last_test_at),
            )
        return format_html('<span id="integration-{}-badge">{}</span>', record.pk, inner)

    @cached_property
    def _allowed(self):
        user = self.request.user
        return {
            name: user.has_perm(f"defender.{name}") for name in ("run_test", "change_integration", "delete_integration")
        }

    def render_actions(self, record):
        parts = []
        if self._allowed["run_test"]:
            test_url = reverse("defender:integration-test", args=[record.pk])
            parts.append(
                format_html(
                    '<form method="post" action="{0}" class="d-inline">'
                    '<input type="hidden" name="csrfmiddlewaretoken" value="{1}">'
                    '<button type="submit" class="btn btn-sm btn-outline-primary" hx-post="{0}" '
                    'hx-target="#test-result" hx-disabled-elt="this" data-test-button '
                    'title="Test: connect, sign in and read one alert">'
                    '<i class="bi bi-activity" aria-hidden="true"></i> Test</button></form>',
                    test_url,
                    get_token(self.request),
                )
            )
        if self._allowed["change_integration"]:
            parts.append(
                format_html(
                    '<a class="btn btn-sm btn-outline-secondary" href="{}">'
                    '<i class="bi bi-pencil" aria-hidden="true"></i> Edit</a>',
                    reverse("defender:integration-edit", args=[record.pk]),
                )
            )
        if self._allowed["delete_integration"]:
            parts.append(
                format_html(
                    '<a class="btn btn-sm btn-outline-danger" href="{}">'
                    '<i class="bi bi-trash" aria-hidden="true"></i> Delete</a>',
                    reverse("defender:integration-delete", args=[record.pk]),
                )
            )
        return format_html_join("\n", "{}", ((part,) for part in parts))
