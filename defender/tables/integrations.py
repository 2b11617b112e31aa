"""The Settings > Integrations table.

The state, last-Test and action cells render the same partials as the detail page and the htmx swaps, so their
markup has one home; they render with a plain context, because django-tables2's TemplateColumn runs every context
processor for every cell, which cost more than the page's whole budget at 50 rows.
"""

import django_tables2 as tables
from django.contrib.auth.context_processors import PermWrapper
from django.middleware.csrf import get_token
from django.template.loader import get_template
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html

from defender.models import Integration
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
        return _badge("defender/integrations/_health_badge.html", {"integration": record})

    def render_last_test(self, record):
        return _badge("defender/integrations/_test_badge.html", {"integration": record})

    @cached_property
    def _actions_context(self):
        """What the row actions read besides the row: the user's permissions and the CSRF token, taken once."""
        return {"perms": PermWrapper(self.request.user), "csrf_token": get_token(self.request)}

    def render_actions(self, record):
        return _badge("defender/integrations/_row_actions.html", {"integration": record, **self._actions_context})


def _badge(template_name, context):
    """One of the partials the detail page and the htmx swaps render too, with a plain context: no context processor
    runs per cell (what made per-cell TemplateColumns cost more than the page's budget)."""
    return get_template(template_name).render(context)
