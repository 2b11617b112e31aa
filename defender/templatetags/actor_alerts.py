"""Tolerances on the actor's page, written the way its table writes them (times: the times library)."""

from django import template

from defender.services.alerts import clock_skew_text

register = template.Library()


@register.filter
def clock_skew(seconds):
    """A clock-skew tolerance in words: "5 min"."""
    return clock_skew_text(seconds or 0)
