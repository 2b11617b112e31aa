"""The Settings > Integrations table."""

import django_tables2 as tables

from defender.models import Integration
from defender.tables.paging import ConsoleTable


class IntegrationTable(ConsoleTable):
    name = tables.TemplateColumn(
        "<a href=\"{% url 'defender:integration-detail' record.pk %}\">{{ record.name }}</a>"
        "{% with warning=record.secret_expiry_warning %}{% if warning %} "
        '<span class="badge {% if record.secret_days_left < 0 %}text-bg-danger{% else %}text-bg-warning{% endif %}" '
        'title="{{ warning }}">{% if record.secret_days_left < 0 %}Secret expired{% else %}Secret expires soon'
        "{% endif %}</span>{% endif %}{% endwith %}",
        order_by=("name",),
    )
    host = tables.TemplateColumn("{{ record.host }}:{{ record.port }}", verbose_name="Host", order_by=("host", "port"))
    location = tables.TemplateColumn(
        "{{ record.get_location_display }}{% if record.remote_node %} "
        "<small class='text-body-secondary'>via {{ record.remote_node.name }}</small>{% endif %}",
        order_by=("location", "remote_node__name"),
    )
    enabled = tables.BooleanColumn(yesno="Yes,No")
    proxy_rule = tables.Column(verbose_name="Proxy", default="None")
    # Read from the row itself (the fields after_test keeps): no query per row.
    state = tables.TemplateColumn(
        template_name="defender/integrations/_health_badge.html",
        verbose_name="State",
        accessor="health_state",
        order_by=("health_state", "-consecutive_failures"),
        context_object_name="integration",
    )
    last_test = tables.TemplateColumn(
        template_name="defender/integrations/_test_badge.html",
        verbose_name="Last Test",
        accessor="last_test_at",
        order_by=("last_test_at",),
        context_object_name="integration",
    )
    actions = tables.TemplateColumn(
        template_name="defender/integrations/_row_actions.html",
        context_object_name="integration",
        verbose_name="",
        orderable=False,
        attrs={"td": {"class": "text-end text-nowrap row-actions"}},
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
