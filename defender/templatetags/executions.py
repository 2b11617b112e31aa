"""Outcome badges and ATT&CK links, the same on every page."""

from django import template

from defender.tables.executions import outcome_badge as badge
from defender.tables.executions import outcome_counts

register = template.Library()


@register.simple_tag(name="outcome_badge")
def outcome_badge(outcome: str):
    return badge(outcome)


@register.filter
def attack_url(technique_id: str) -> str:
    """The technique's page on attack.mitre.org: T1003.001 is /techniques/T1003/001/."""
    return "https://attack.mitre.org/techniques/" + "/".join(str(technique_id).split(".", 1)) + "/"


@register.filter
def get_item(mapping, key):
    return mapping.get(key, "")


@register.simple_tag(name="outcome_counts")
def outcome_counts_tag(execution):
    """The badges of an execution's procedures counted per outcome (annotated by with_outcome_counts)."""
    return outcome_counts(execution)
