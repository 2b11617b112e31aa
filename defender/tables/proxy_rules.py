"""The Settings > Proxy Rules table."""

import django_tables2 as tables

from defender.models import ProxyRule
from defender.tables.paging import ConsoleTable


class ProxyRuleTable(ConsoleTable):
    name = tables.Column(linkify={"viewname": "defender:proxyrule-detail", "args": [tables.A("pk")]})
    proxy = tables.TemplateColumn(
        "{{ record.host }}:{{ record.port }}", verbose_name="Proxy", accessor="host", order_by=("host", "port")
    )
    username = tables.Column(verbose_name="Authentication", default="None")
    bypass_hosts = tables.Column(verbose_name="Bypass hosts", orderable=False)
    integrations = tables.Column(verbose_name="Integrations", accessor="integration_count", orderable=False)
    actions = tables.TemplateColumn(
        template_name="defender/proxy_rules/_row_actions.html",
        verbose_name="",
        orderable=False,
        attrs={"td": {"class": "text-end text-nowrap row-actions"}},
    )

    class Meta:
        model = ProxyRule
        fields = ("name", "proxy_type", "proxy", "username", "bypass_hosts", "integrations", "actions")
        attrs = {"class": "table table-hover align-middle"}
        empty_text = "No proxy rules yet: add one with Add Proxy Rule."

    def render_bypass_hosts(self, record):
        return ", ".join(record.bypass_list())
