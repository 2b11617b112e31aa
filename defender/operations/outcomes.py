"""Evaluate procedures: which stored alerts match each, and so whether Defender prevented, alerted on or missed it.

The alerts come from the store, which the sync sweep keeps current. For an enabled Local integration that is not
swept, the actor's window is asked of Defender first (through the call budget, as background work). An integration
that could not be asked, or whose last sweep failed, is reported on the procedure, which then stays Pending: the
absence of an alert proves nothing when Defender was not heard. Telemetry (Detected) is not asked for yet: the note
says so, so nobody reads "Missed" as "Defender saw nothing".
"""

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from defender.destinations import REFUSED_SECRETS
from defender.models import Alert, Execution, Integration, Outcome, Procedure, ProcedureMatch
from defender.operations import alerts as alert_use_case
from defender.operations import background, sync
from defender.services import budget, hunting
from defender.services import outcomes as rules
from defender.services.errors import DefenderError

logger = logging.getLogger(__name__)

TELEMETRY_NOT_CHECKED = "Telemetry was not checked: no enabled Local integration has advanced hunting."
# Names of the actor's machine as its stored alerts give them, added to its own names for the hunting query.
MACHINE_NAMES_READ = 20


class Telemetry:
    """Advanced hunting for one evaluation: which integrations can be asked, and what each answered per procedure.

    Asked only for procedures no alert matched (an alert already says more), once per procedure and integration,
    as background work within the call budget. The answer of each integration is a check on the procedure: ok True
    (asked), None (not checked, e.g. the permission is missing, with what to grant), False (the call failed).
    """

    def __init__(self, execution: Execution, ask_defender: bool) -> None:
        self.execution = execution
        self.ask = ask_defender
        self._settings: list[tuple[Integration, Any]] | None = None
        self._names: list[str] | None = None

    def _integrations(self) -> list[tuple[Integration, Any]]:
        if self._settings is None:
            self._settings = []
            for integration in Integration.objects.filter(enabled=True).order_by("name"):
                if integration.location != Integration.Location.LOCAL or integration.api_flavour not in hunting.PATHS:
                    continue
                try:
                    self._settings.append((integration, integration.to_settings()))
                except REFUSED_SECRETS as error:
                    self._settings.append((integration, error))
        return self._settings

    def _device_names(self) -> list[str]:
        if self._names is None:
            actor = self.execution.actor
            names = {name.lower() for name in actor.hostnames()} | {
                name.split(".")[0].lower() for name in actor.hostnames()
            }
            seen = (
                Alert.objects.filter(actor=actor)
                .exclude(machine_name="")
                .order_by()
                .values_list("machine_name", flat=True)
            )
            names |= {name.lower() for name in seen.distinct()[:MACHINE_NAMES_READ]}
            self._names = sorted(names)
        return self._names

    def look(self, procedure: Procedure, skew: timedelta) -> tuple[bool, list[dict]]:
        """(whether hunting saw the procedure's process, the per-integration checks)."""
        if not self.ask or not procedure.command.strip():
            return False, []
        seen, checks = False, []
        text = hunting.query(
            self._device_names(), procedure.started_at - skew, procedure.window_closes_at, procedure.command
        )
        for integration, settings in self._integrations():
            if isinstance(settings, Exception):
                checks.append({**_check(integration, False, str(settings)), "hunting": True})
                continue
            try:
                with budget.background():
                    answer = hunting.run(settings, text)
            except hunting.HuntingUnavailable as unavailable:
                checks.append({**_check(integration, True, str(unavailable)), "ok": None, "hunting": True})
                continue
            except DefenderError as error:
                checks.append({**_check(integration, False, f"advanced hunting failed: {error}"), "hunting": True})
                continue
            found = hunting.ran(answer.rows, procedure.command)
            seen = seen or found
            message = "hunting found the process" if found else "hunting found no such process"
            checks.append({**_check(integration, True, message), "hunting": True})
        return seen, checks


DEFAULT_CLOCK_SKEW_SECONDS = 300


def queue_evaluation(execution_id: int) -> None:
    """Evaluate the execution in a worker once the transaction that stored it commits."""
    from defender import tasks  # tasks import the operations

    background.submit(tasks.evaluate_outcomes, execution_id)


def _alert_facts(alert: Mapping[str, Any]) -> rules.AlertFacts:
    return rules.AlertFacts(
        pk=alert["pk"],
        techniques=tuple(alert["mitre_techniques"] or ()),
        evidence=tuple(item for item in alert["evidence"] or () if isinstance(item, dict)),
        first_event=alert["first_event"],
        last_event=alert["last_event"],
        created=alert["created"],
        last_update=alert["last_update"],
    )


def _candidates(execution: Execution, since: datetime, until: datetime) -> list[rules.AlertFacts]:
    """The actor's stored alerts whose activity may overlap [since, until] (the rules check each exactly)."""
    rows = (
        Alert.objects.filter(actor_id=execution.actor_id)
        .filter(Q(last_event__gte=since) | Q(last_update__gte=since) | Q(created__gte=since))
        .filter(Q(first_event__lte=until) | Q(created__lte=until) | Q(last_update__lte=until))
        .values("pk", "mitre_techniques", "evidence", "first_event", "last_event", "created", "last_update")
    )
    return [_alert_facts(row) for row in rows]


def _check(integration: Integration, ok: bool, message: str) -> dict:
    return {"integration": integration.pk, "name": integration.name, "ok": ok, "message": message}


def _hear_integrations(execution: Execution, since: datetime, until: datetime, ask_defender: bool) -> list[dict]:
    """Make the store current for the window where a sweep does not, and say what each integration answered."""
    checks = []
    to_ask = []
    integrations = Integration.objects.filter(enabled=True).select_related("sync_schedule__interval", "sync_state")
    for integration in integrations.order_by("name"):
        if integration.location != Integration.Location.LOCAL:
            checks.append(_check(integration, True, "Remote: its node's stored alerts are used."))
            continue
        if sync.schedule_minutes(integration) is not None:
            state = getattr(integration, "sync_state", None)
            if state is not None and state.last_ok is False:
                checks.append(
                    _check(integration, False, f"its last sweep failed: {state.last_error or 'no reason recorded'}")
                )
            elif state is None or state.last_finished_at is None:
                checks.append(_check(integration, False, "it has not been swept yet: wait for its first sweep."))
            elif until <= timezone.now() and (state.last_started_at is None or state.last_started_at < until):
                # A sweep reads what Defender changed up to its start: one that started before the window closed
                # cannot speak for the rest of it.
                checks.append(
                    _check(integration, False, "its last sweep ran before the window closed; the next covers it.")
                )
            else:
                checks.append(_check(integration, True, "swept"))
            continue
        to_ask.append(integration)
    if to_ask and ask_defender:
        with budget.background():
            fetches = alert_use_case.fetch_alerts(execution.actor, to_ask, since, min(until, timezone.now()))
        checks.extend(_check(fetch.integration, fetch.ok, fetch.message) for fetch in fetches)
    elif to_ask:
        checks.extend(_check(integration, True, "stored alerts only") for integration in to_ask)
    return checks


def evaluate_execution(execution: Execution, *, ask_defender: bool = True) -> list[Procedure]:
    """Evaluate every procedure of the execution, store the matches and outcomes, and return the procedures."""
    procedures = list(execution.procedures.order_by("order", "pk"))
    if not procedures:
        return procedures
    skew_seconds = max(
        Integration.objects.filter(enabled=True).values_list("clock_skew_seconds", flat=True),
        default=DEFAULT_CLOCK_SKEW_SECONDS,
    )
    skew = timedelta(seconds=skew_seconds)
    since = min(procedure.started_at for procedure in procedures) - skew
    until = max(procedure.window_closes_at for procedure in procedures)
    checks = _hear_integrations(execution, since, until, ask_defender)
    failed = [check for check in checks if not check["ok"]]
    candidates = _candidates(execution, since, until)
    telemetry = Telemetry(execution, ask_defender)
    now = timezone.now()
    with transaction.atomic():
        ProcedureMatch.objects.filter(procedure__execution=execution).delete()
        new_matches: list[ProcedureMatch] = []
        for procedure in procedures:
            facts = rules.ProcedureFacts(
                procedure.technique_id, procedure.command, procedure.started_at, procedure.stopped_at
            )
            window = procedure.window_closes_at - procedure.stopped_at
            found = rules.matches(facts, candidates, skew, window)
            closed = procedure.window_closes_at <= now
            # Telemetry is asked once the window has closed: until then an alert may still come, and a query every
            # evaluation would spend the tenant's hunting budget (45 a minute) on an answer that cannot be final.
            seen, hunted = (False, []) if found or not closed else telemetry.look(procedure, skew)
            unheard = failed + [check for check in hunted if check["ok"] is False]
            outcome = rules.outcome(found, telemetry_seen=seen, window_closed=closed, unanswered=bool(unheard))
            procedure.set_evaluated(outcome)
            procedure.checks = checks + hunted
            procedure.outcome_note = _note(outcome, unheard, closed, hunted)
            procedure.evaluated_at = now
            new_matches.extend(
                ProcedureMatch(
                    procedure=procedure,
                    alert_id=item.alert_pk,
                    rules=list(item.rules),
                    reason=item.reason,
                    prevented=item.prevented,
                )
                for item in found
            )
        Procedure.objects.bulk_update(
            procedures, ["outcome", "evaluated_outcome", "checks", "outcome_note", "evaluated_at"]
        )
        ProcedureMatch.objects.bulk_create(new_matches)
        Execution.objects.filter(pk=execution.pk).update(evaluated_at=now)
    return procedures


def _note(outcome: str, failed: list[dict], closed: bool, hunted: list[dict]) -> str:
    if failed:
        heard = "; ".join(f"could not ask {check['name']}: {check['message']}" for check in failed)
        if outcome in (Outcome.PREVENTED, Outcome.ALERTED, Outcome.DETECTED):
            return heard
        return f"{heard}. It stays Pending until every integration has answered for its window."
    unchecked = "; ".join(check["message"] for check in hunted if check["ok"] is None)
    if outcome == Outcome.DETECTED:
        return "No alert, but Defender recorded the procedure's process (advanced hunting)."
    if outcome == Outcome.MISSED:
        if not hunted:
            return f"No alert matched before the window closed. {TELEMETRY_NOT_CHECKED}"
        return "No alert matched before the window closed" + (
            f"; {unchecked}." if unchecked else ", and hunting found no process."
        )
    if outcome == Outcome.PENDING and not closed:
        return "Defender may still report it: the detection window is open. Telemetry is checked when it closes."
    return ""


def evaluate_pending(now: datetime | None = None) -> int:
    """Evaluate again every execution with a procedure still Pending or not evaluated since its window closed (an
    Alerted one may yet turn out Prevented, while Defender reports within the window); returns how many procedures
    were evaluated. One execution failing is logged and leaves the others evaluated."""
    execution_ids = (
        Procedure.objects.filter(
            Q(evaluated_outcome=Outcome.PENDING)
            | Q(evaluated_at__isnull=True)
            | Q(evaluated_at__lt=F("window_closes_at"))
        )
        .values_list("execution_id", flat=True)
        .distinct()
        .order_by("execution_id")
    )
    done = 0
    for execution in Execution.objects.filter(pk__in=list(execution_ids)).select_related("actor"):
        try:
            done += len(evaluate_execution(execution))
        except Exception:
            logger.exception("Evaluating execution %s failed", execution.pk)
    return done
