"""The Settings > Remote Nodes table."""

import django_tables2 as tables

from defender.models import RemoteNode
from defender.tables.paging import ConsoleTable


class RemoteNodeTable(ConsoleTable):
    name = tables.Column(linkify={"viewname": "defender:remotenode-detail", "args": [tables.A("pk")]})
    status = tables.TemplateColumn(
        template_name="defender/remote_nodes/_status.html",
        context_object_name="node",
        accessor="last_seen_at",
        verbose_name="Status",
        order_by=("last_seen_at",),
    )
    agent_version = tables.Column(verbose_name="Agent version", default="—")
    integrations = tables.TemplateColumn(
        "{% for integration in node.integrations.all %}{{ integration.name }}{% if not forloop.last %}, {% endif %}"
        "{% empty %}<span class='text-body-secondary'>None</span>{% endfor %}",
        context_object_name="node",
        verbose_name="Integrations",
        orderable=False,
    )

    class Meta:
        model = RemoteNode
        fields = ("name", "status", "agent_version", "integrations")
        attrs = {"class": "table table-hover align-middle"}
        empty_text = "No remote nodes yet: add one for each network the site cannot reach."
