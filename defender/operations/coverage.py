"""Coverage: for a period and a set of actors, each technique tried and the best that Defender did about it, grouped
by ATT&CK tactic; and the same as an ATT&CK Navigator layer (format 4.5) that opens in MITRE's Navigator."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count

from defender import attack
from defender.models import OUTCOME_RANK, Outcome, Procedure

# Navigator colours per outcome, and the score that sorts them (best highest).
LAYER_COLOURS = {
    Outcome.PREVENTED: "#198754",
    Outcome.ALERTED: "#0d6efd",
    Outcome.DETECTED: "#0dcaf0",
    Outcome.MISSED: "#dc3545",
    Outcome.PENDING: "#adb5bd",
}
LAYER_SCORES = {Outcome.PREVENTED: 100, Outcome.ALERTED: 75, Outcome.DETECTED: 50, Outcome.MISSED: 0}
NAVIGATOR_VERSION = "5.1.0"
# A technique's comment names at most this many executions, then says how many more.
EXECUTIONS_NAMED = 20


@dataclass
class TechniqueCoverage:
    technique_id: str
    name: str
    tactics: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    executions: list[str] = field(default_factory=list)
    execution_count: int = 0

    @property
    def best(self) -> str:
        return max(self.counts, key=lambda outcome: OUTCOME_RANK[Outcome(outcome)])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def count(self, outcome: str) -> int:
        return self.counts.get(outcome, 0)


@dataclass
class TacticCoverage:
    key: str
    name: str
    techniques: list[TechniqueCoverage]

    def best_counts(self) -> dict[str, int]:
        """How many of the tactic's techniques have each best outcome."""
        counts: dict[str, int] = defaultdict(int)
        for technique in self.techniques:
            counts[technique.best] += 1
        return dict(counts)


@dataclass
class Coverage:
    since: datetime | None
    until: datetime | None
    techniques: list[TechniqueCoverage]
    tactics_known: bool

    def by_tactic(self) -> list[TacticCoverage]:
        """Tactics in matrix order, each with its techniques (one technique may serve several tactics); techniques
        ATT&CK's data does not know come last."""
        grouped: dict[str, list[TechniqueCoverage]] = defaultdict(list)
        for technique in self.techniques:
            for tactic in technique.tactics or ("",):
                grouped[tactic].append(technique)
        tactics = [TacticCoverage(key, name, grouped[key]) for key, name in attack.TACTICS if key in grouped]
        if "" in grouped:
            tactics.append(TacticCoverage("", attack.UNKNOWN_TACTIC, grouped[""]))
        return tactics

    def best_counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for technique in self.techniques:
            counts[technique.best] += 1
        return dict(counts)


def procedures_in(since: datetime | None, until: datetime | None, actor_ids: Sequence[int] | None):
    procedures = Procedure.objects.all()
    if since is not None:
        procedures = procedures.filter(started_at__gte=since)
    if until is not None:
        procedures = procedures.filter(started_at__lte=until)
    if actor_ids:
        procedures = procedures.filter(execution__actor_id__in=list(actor_ids))
    return procedures


def coverage(
    *, since: datetime | None = None, until: datetime | None = None, actor_ids: Sequence[int] | None = None
) -> Coverage:
    """Every technique tried in the period on those actors (all actors when none are given), in two queries."""
    procedures = procedures_in(since, until, actor_ids)
    found: dict[str, TechniqueCoverage] = {}
    counted = procedures.order_by().values_list("technique_id", "outcome").annotate(n=Count("pk"))
    for technique_id, outcome, n in counted:
        entry = found.get(technique_id)
        if entry is None:
            entry = found[technique_id] = TechniqueCoverage(
                technique_id, attack.name_of(technique_id), attack.tactics_of(technique_id)
            )
        entry.counts[outcome] = n
    runs = (
        procedures.order_by("technique_id", "-execution__imported_at")
        .values_list("technique_id", "execution__external_id", "execution_id")
        .distinct()
    )
    for technique_id, external_id, execution_id in runs:
        entry = found[technique_id]
        label = external_id or f"Execution {execution_id}"
        if label in entry.executions:
            continue
        entry.execution_count += 1
        if len(entry.executions) < EXECUTIONS_NAMED:
            entry.executions.append(label)
    techniques = sorted(found.values(), key=lambda entry: entry.technique_id)
    return Coverage(since, until, techniques, bool(attack.techniques()))


def navigator_layer(cov: Coverage, *, name: str = "Defender coverage") -> dict:
    """An ATT&CK Navigator layer (layer format 4.5, enterprise-attack): one entry per technique, scored and coloured
    by its best outcome, with a legend and a comment listing the executions that tried it."""
    period = " to ".join(
        moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "any time" for moment in (cov.since, cov.until)
    )
    techniques = []
    for entry in cov.techniques:
        best = Outcome(entry.best)
        counts = ", ".join(f"{Outcome(o).label} {entry.count(o)}" for o in Outcome if entry.count(o))
        more = entry.execution_count - len(entry.executions)
        runs = ", ".join(entry.executions) + (f" and {more} more" if more > 0 else "")
        item = {
            "techniqueID": entry.technique_id,
            "color": LAYER_COLOURS[best],
            "comment": f"{best.label} (best of {entry.total}: {counts}). Executions: {runs}.",
            "enabled": True,
            "metadata": [{"name": "outcome", "value": best.label}],
            "showSubtechniques": False,
        }
        if best in LAYER_SCORES:
            item["score"] = LAYER_SCORES[best]
        techniques.append(item)
    return {
        "name": name,
        "versions": {"attack": attack.ATTACK_VERSION, "navigator": NAVIGATOR_VERSION, "layer": "4.5"},
        "domain": "enterprise-attack",
        "description": f"What Defender did about the procedures run from {period}: the best outcome per technique.",
        "sorting": 3,
        "layout": {"layout": "side", "showID": True, "showName": True, "expandedSubtechniques": "annotated"},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": ["#dc3545", "#0dcaf0", "#0d6efd", "#198754"], "minValue": 0, "maxValue": 100},
        "legendItems": [{"label": outcome.label, "color": LAYER_COLOURS[outcome]} for outcome in Outcome],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
        "selectVisibleTechniques": False,
        "metadata": [{"name": "period", "value": period}],
    }
