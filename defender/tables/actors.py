"""The Actors list."""

import django_tables2 as tables

from defender.models import Actor
from defender.tables.alerts import breakable_host
from defender.tables.paging import ConsoleTable


class ActorTable(ConsoleTable):
    name = tables.Column(linkify=("defender:actor-detail", {"pk": tables.A("pk")}))
    hostname = tables.Column()
    alternate_hostname = tables.Column(verbose_name="Alternate hostname")
    ip_address = tables.Column(verbose_name="IP address")
    operating_system = tables.Column(verbose_name="Operating system")
    alert_count = tables.Column(verbose_name="Stored alerts", attrs={"td": {"class": "text-end"}})

    class Meta:
        model = Actor
        fields = ()
        order_by = "name"
        empty_text = "No actors yet."
        attrs = {"class": "table table-hover align-middle"}

    def render_hostname(self, value):
        return breakable_host(value)

    def render_alternate_hostname(self, value):
        return breakable_host(value)
