"""Times and tolerances on the actor's page, written the way its table writes them."""

from django import template

from defender.services.alerts import clock_skew_text
from defender.tables.alerts import utc_time

register = template.Library()


@register.filter
def moment(value):
    """A time the browser shows in the viewer's zone (UTC without JavaScript); it wraps between date and time only."""
    return utc_time(value)


@register.filter
def clock_skew(seconds):
    """A clock-skew tolerance in words: "5 min"."""
    return clock_skew_text(seconds or 0)
