"""Procedures × alerts → what Defender did: the rules, on plain values.

An alert is a candidate for a procedure when its activity overlaps [start − clock skew, stop + detection window].
A candidate matches when its MITRE techniques include the procedure's technique, its parent or one of its
sub-techniques; when a process command line of its evidence is the procedure's command (compared normalised: case,
quoting, path separators, spacing) or contains it; when a file of its evidence is one the command names; or when a
hash of its evidence appears in the command. The outcome, best first (VECTR's priority): Prevented (a matching alert
whose evidence says blocked or prevented), Alerted, Detected (no alert, but hunting saw the process), Missed (the
window closed with none of these), Pending while the window is open.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

PREVENTED, ALERTED, DETECTED, MISSED, PENDING = "prevented", "alerted", "detected", "missed", "pending"
TECHNIQUE, COMMAND, FILE, HASH = "technique", "command", "file", "hash"

# Detection and remediation statuses that mean Defender stopped it (MDE: Blocked, Prevented; Graph: blocked,
# prevented, remediated; the SIEM exporter: "Blocked", "Prevented", "Quarantined" and the like).
STOPPED = ("blocked", "prevented", "remediated", "quarantined", "removed", "cleaned")
HASH_PATTERN = re.compile(r"\b(?:[0-9a-fA-F]{64}|[0-9a-fA-F]{40}|[0-9a-fA-F]{32})\b")
# File names a command names: the last part of a path or a bare word with an extension of a runnable or dumped file.
FILE_PATTERN = re.compile(
    r"([^\\/\s\"']+\.(?:exe|dll|ps1|psm1|bat|cmd|vbs|js|hta|scr|sys|msi|dmp|sh|py|elf|so|dylib))\b", re.IGNORECASE
)
# Programs that launch every other procedure: naming one says nothing about which procedure an alert is about.
LAUNCHERS = frozenset(
    [
        "cmd.exe",
        "powershell.exe",
        "pwsh.exe",
        "conhost.exe",
        "rundll32.exe",
        "regsvr32.exe",
        "mshta.exe",
        "wscript.exe",
        "cscript.exe",
        "wmic.exe",
        "msiexec.exe",
        "explorer.exe",
        "svchost.exe",
        "python.exe",
        "bash.exe",
    ]
)
# The shortest command worth comparing inside another: shorter ones (`whoami`) would be in every command line.
LEAST_CONTAINED = 12


@dataclass(frozen=True)
class ProcedureFacts:
    technique_id: str
    command: str
    started_at: datetime
    stopped_at: datetime


@dataclass(frozen=True)
class AlertFacts:
    pk: int
    techniques: tuple[str, ...]
    evidence: tuple[Mapping[str, Any], ...]
    first_event: datetime | None = None
    last_event: datetime | None = None
    created: datetime | None = None
    last_update: datetime | None = None

    def activity(self) -> tuple[datetime, datetime] | None:
        """When the alert's activity was: first to last event, else when it was raised."""
        start = self.first_event or self.created or self.last_update
        end = self.last_event or self.last_update or self.created or start
        if start is None or end is None:
            return None
        return (min(start, end), max(start, end))

    @property
    def stopped(self) -> bool:
        """Its evidence (or remediation) says Defender blocked or prevented it."""
        for item in self.evidence:
            for key in ("detection_status", "remediation_status"):
                status = str(item.get(key) or "").lower()
                if any(word in status for word in STOPPED):
                    return True
        return False


@dataclass(frozen=True)
class MatchFound:
    alert_pk: int
    rules: tuple[str, ...]
    reason: str
    prevented: bool


def candidate_window(
    procedure: ProcedureFacts, clock_skew: timedelta, detection_window: timedelta
) -> tuple[datetime, datetime]:
    return (procedure.started_at - clock_skew, procedure.stopped_at + detection_window)


def overlaps(alert: AlertFacts, window: tuple[datetime, datetime]) -> bool:
    activity = alert.activity()
    return activity is not None and activity[0] <= window[1] and activity[1] >= window[0]


def normalise_command(command: str) -> str:
    """A command line as compared: lower case, no quotes, one kind of path separator, single spaces."""
    text = command.lower().replace('"', "").replace("'", "").replace("`", "").replace("\\", "/")
    return " ".join(text.split())


def _technique_rule(wanted: str, techniques: Iterable[str]) -> str:
    """Why the alert's techniques cover the procedure's, or "": the same, its parent, or a sub-technique."""
    wanted = wanted.upper()
    parent = wanted.split(".", 1)[0]
    for technique in techniques:
        technique = str(technique).strip().upper()
        if technique == wanted:
            return f"technique {wanted} is among the alert's"
        if "." in wanted and technique == parent:
            return f"the alert names {technique}, the parent of {wanted}"
        if "." not in wanted and technique.split(".", 1)[0] == wanted and "." in technique:
            return f"the alert names {technique}, a sub-technique of {wanted}"
    return ""


def _files_named(command: str) -> set[str]:
    """The files a command names, leaving out the launchers every procedure uses."""
    return {name.lower() for name in FILE_PATTERN.findall(command.replace("\\", "/"))} - LAUNCHERS


def match(procedure: ProcedureFacts, alert: AlertFacts) -> MatchFound | None:
    """Whether the alert is about the procedure, and by which rules (the caller checks the window)."""
    rules: list[str] = []
    reasons: list[str] = []
    why = _technique_rule(procedure.technique_id, alert.techniques)
    if why:
        rules.append(TECHNIQUE)
        reasons.append(why)
    command = normalise_command(procedure.command)
    lines = [normalise_command(str(item.get("command_line") or "")) for item in alert.evidence]
    if command and any(
        line and (line == command or (len(command) >= LEAST_CONTAINED and command in line)) for line in lines
    ):
        rules.append(COMMAND)
        reasons.append("a process of its evidence ran the procedure's command")
    named = _files_named(procedure.command)
    if named:
        for item in alert.evidence:
            name = str(item.get("file_name") or item.get("process_name") or "").lower()
            if name and name in named:
                rules.append(FILE)
                reasons.append(f"its evidence has the file {name}, which the command names")
                break
    hashes = {value.lower() for value in HASH_PATTERN.findall(procedure.command)}
    if hashes:
        for item in alert.evidence:
            found = {str(item.get(key) or "").lower() for key in ("sha256", "sha1", "md5")} & hashes
            if found:
                rules.append(HASH)
                reasons.append(f"its evidence has the hash {sorted(found)[0][:16]}…, which the command names")
                break
    if not rules:
        return None
    return MatchFound(alert.pk, tuple(rules), "; ".join(reasons), alert.stopped)


def matches(
    procedure: ProcedureFacts,
    alerts: Iterable[AlertFacts],
    clock_skew: timedelta,
    detection_window: timedelta,
) -> list[MatchFound]:
    window = candidate_window(procedure, clock_skew, detection_window)
    found = (match(procedure, alert) for alert in alerts if overlaps(alert, window))
    return [item for item in found if item is not None]


def outcome(found: Sequence[MatchFound], *, telemetry_seen: bool, window_closed: bool, unanswered: bool = False) -> str:
    """The procedure's outcome. ``unanswered``: an integration could not be asked, so the absence of an alert
    proves nothing, and the procedure stays Pending rather than becoming Missed."""
    if any(item.prevented for item in found):
        return PREVENTED
    if found:
        return ALERTED
    if telemetry_seen:
        return DETECTED
    if window_closed and not unanswered:
        return MISSED
    return PENDING
