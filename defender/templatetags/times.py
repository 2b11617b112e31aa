"""Times as every page writes them: ISO-like, with their zone named, wrapping between date and time only."""

from django import template

from defender.tables.alerts import utc_time

register = template.Library()


@register.filter
def moment(value):
    """A time the browser shows in the viewer's zone (UTC without JavaScript); it wraps between date and time only."""
    return utc_time(value) if value else ""
