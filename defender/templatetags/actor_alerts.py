"""Tolerances and alert details on the actor's pages, written the way its table writes them (times: the times
library)."""

import json

from django import template

from defender.services.alerts import clock_skew_text

# The raw alert shown on its page: services.alerts already bounds what is kept (its evidence cut to MOST_EVIDENCE);
# this bounds what one page renders whatever a row holds.
RAW_SHOWN = 200_000
EVIDENCE_LABELS = {
    "entity_type": "Entity",
    "process_name": "Process",
    "command_line": "Command line",
    "parent_process": "Parent process",
    "file_name": "File name",
    "file_path": "File path",
    "sha1": "SHA-1",
    "sha256": "SHA-256",
    "md5": "MD5",
    "user": "User",
    "ip_address": "IP address",
    "url": "URL",
    "detection_status": "Detection status",
    "remediation_status": "Remediation status",
    "was_executing": "Was executing",
}

register = template.Library()


@register.filter
def clock_skew(seconds):
    """A clock-skew tolerance in words: "5 min"."""
    return clock_skew_text(seconds or 0)


@register.filter
def evidence_facts(entry):
    """The filled fields of one evidence entity, as (label, value) pairs in a fixed order."""
    if not isinstance(entry, dict):
        return []
    facts = []
    for name, label in EVIDENCE_LABELS.items():
        value = entry.get(name)
        if value in ("", None):
            continue
        facts.append((label, ("Yes" if value else "No") if isinstance(value, bool) else str(value)))
    return facts


@register.filter
def pretty_json(value):
    """The JSON indented for reading, cut at RAW_SHOWN characters (the template escapes it)."""
    shown = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    if len(shown) > RAW_SHOWN:
        return shown[:RAW_SHOWN] + f"\n… cut here: {len(shown) - RAW_SHOWN:,} more characters not shown."
    return shown
