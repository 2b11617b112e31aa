"""Executions into the database: an ATTiRe log (uploaded, posted to the API, or named on the command line) or
procedures recorded by hand. One home for all three, so that each resolves its actor, validates and stores alike.

Everything of one execution is stored in one transaction: a log with one bad procedure stores nothing. An
execution ID imported again is the same execution, left as it was.
"""

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from defender import validators
from defender.models import Actor, Execution, Integration, Procedure
from defender.operations.matching import ActorIndex
from defender.services import attire

DEFAULT_DETECTION_WINDOW_MINUTES = 60


class ExecutionRejected(Exception):
    """An execution that cannot be stored; ``str()`` says why, naming the field and the procedure."""

    def __init__(self, message: str, field: str = "", procedure: str = "", unknown_target: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.procedure = procedure
        self.unknown_target = unknown_target


@dataclass(frozen=True)
class ImportResult:
    execution: Execution
    created: bool  # False when this execution ID had been imported before: nothing was changed

    @property
    def summary(self) -> str:
        execution = self.execution
        count = execution.procedures.count()
        if not self.created:
            return (
                f"Execution {execution} was imported before ({count} procedures on {execution.actor}); left as it was."
            )
        return f"Imported execution {execution}: {count} procedures on {execution.actor}."


def _short(name: str) -> str:
    return name.lower().rstrip(".").split(".", 1)[0]


def resolve_actor(host: str, ip: str = "") -> Actor | None:
    """The actor a reported target is: its hostname or alternate hostname, a short name for its FQDN or the other
    way round, else its IP address. Several candidates: the best match, as the alert sweep decides."""
    host, ip = (host or "").strip(), (ip or "").strip()
    names = Q()
    if host:
        short = _short(host)
        for field in ("hostname", "alternate_hostname"):
            names |= Q(**{f"{field}__iexact": host}) | Q(**{f"{field}__iexact": short})
            names |= Q(**{f"{field}__istartswith": f"{short}."})
    address = ""
    if ip:
        try:
            address = str(ipaddress.ip_address(ip))
        except ValueError:
            address = ""
        if address:
            names |= Q(ip_address=address)
    if not names:
        return None
    candidates = list(Actor.objects.filter(names).order_by("pk"))
    matches = ActorIndex(candidates).matches(host, addresses=[address] if address else ())
    if not matches:
        return None
    return next(actor for actor in candidates if actor.pk == matches[0].actor_id)


def default_detection_window() -> int:
    """The largest detection window of the enabled integrations (the one that waits longest for Defender)."""
    largest = Integration.objects.filter(enabled=True).aggregate(most=Max("detection_window_minutes"))["most"]
    return largest or DEFAULT_DETECTION_WINDOW_MINUTES


def window_closes_at(execution: Execution, stopped_at: datetime, default_minutes: int | None = None) -> datetime:
    minutes = execution.detection_window_minutes or default_minutes or default_detection_window()
    return stopped_at + timedelta(minutes=minutes)


def _check_window(minutes: int | None) -> None:
    if minutes is not None and not 1 <= minutes <= 7 * 24 * 60:
        raise ExecutionRejected(
            "The detection window must be between 1 minute and 7 days (10,080 minutes).", "detection_window_minutes"
        )


def _created_actor(log: attire.ExecutionLog) -> Actor:
    host = log.target_host
    try:
        validators.validate_hostname_or_fqdn(host)
    except ValidationError:
        raise ExecutionRejected(
            f"The target host {attire.shown(host)} is not a hostname, so no actor can be created for it.",
            "execution-data.target.host",
            unknown_target=host,
        ) from None
    name = host[:100]
    if Actor.objects.filter(name__iexact=name).exists():
        name = f"{host[:90]} ({log.execution_id[:8]})"
    ip = log.target_ip
    try:
        ip = str(ipaddress.ip_address(ip)) if ip else ""
    except ValueError:
        ip = ""
    return Actor.objects.create(name=name, hostname=host, ip_address=ip or None, notes="Created by an ATTiRe import.")


def _unknown_target(log: attire.ExecutionLog) -> ExecutionRejected:
    named = " and ".join(
        part
        for part in (
            attire.shown(log.target_host) if log.target_host else "",
            f"IP {log.target_ip}" if log.target_ip else "",
        )
        if part
    )
    return ExecutionRejected(
        f"No actor is the target host {named or '(none given)'}: add an actor with that hostname (or alternate "
        "hostname, or IP address), or import with “create actors” to add it.",
        "execution-data.target.host",
        unknown_target=log.target_host or log.target_ip,
    )


def import_attire(
    document: Mapping[str, Any] | bytes | str,
    *,
    source: str = Execution.Source.ATTIRE,
    user=None,
    detection_window_minutes: int | None = None,
    create_actors: bool = False,
) -> ImportResult:
    """Store an ATTiRe log (its parsed JSON, or the file's bytes) as one execution with its procedures."""
    _check_window(detection_window_minutes)
    try:
        log = attire.parse(attire.load(document) if isinstance(document, (bytes, str)) else document)
    except attire.AttireInvalid as exc:
        raise ExecutionRejected(str(exc), exc.field, exc.procedure) from None
    earlier = Execution.objects.filter(external_id=log.execution_id).first()
    if earlier is not None:
        return ImportResult(earlier, created=False)

    def actor_for() -> Actor:
        actor = resolve_actor(log.target_host, log.target_ip)
        if actor is not None:
            return actor
        if not create_actors:
            raise _unknown_target(log)
        return _created_actor(log)

    fields = {
        "source": source,
        "execution_source": log.execution_source,
        "target_host": log.target_host,
        "target_ip": log.target_ip,
        "target_user": log.target_user,
        "time_generated": log.time_generated,
        "detection_window_minutes": detection_window_minutes,
        "imported_by": user,
    }
    rows = [
        {
            "order": run.order,
            "technique_id": run.technique_id,
            "name": run.name,
            "procedure_id": run.procedure_id,
            "description": run.description,
            "executor": run.executor,
            "command": run.command,
            "output": run.output,
            "started_at": run.started_at,
            "stopped_at": run.stopped_at,
            "steps": run.steps_as_json(),
        }
        for run in log.procedures
    ]
    return _store(log.execution_id, fields, rows, actor_for)


def _value(procedure: Mapping[str, Any], key: str, index: int, most: int = 0, required: bool = False) -> str:
    value = procedure.get(key)
    if value is None or value == "":
        if required:
            raise ExecutionRejected(f"procedures[{index}].{key} is required.", f"procedures[{index}].{key}")
        return ""
    if not isinstance(value, str):
        raise ExecutionRejected(f"procedures[{index}].{key} must be text.", f"procedures[{index}].{key}")
    if most and len(value) > most:
        raise ExecutionRejected(
            f"procedures[{index}].{key} is longer than {most} characters.", f"procedures[{index}].{key}"
        )
    return value.replace("\x00", "")


def _time(value: Any, field: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ExecutionRejected(f"{field} needs a time zone.", field)
    else:
        try:
            value = attire.parse_time(value, field)
        except attire.AttireInvalid as exc:
            raise ExecutionRejected(str(exc), field) from None
    # Stored in UTC: PostgreSQL refuses offsets past ±15:59, which ISO 8601 allows.
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ExecutionRejected(f"{field} is out of range.", field) from None


def record_procedures(
    *,
    actor: Actor,
    procedures: Sequence[Mapping[str, Any]],
    source: str,
    user=None,
    external_id: str = "",
    detection_window_minutes: int | None = None,
) -> ImportResult:
    """Store procedures typed in or posted as a list: technique_id, name, command, started_at, stopped_at, and
    optionally procedure_id, description, executor, output, order."""
    _check_window(detection_window_minutes)
    if not procedures:
        raise ExecutionRejected("Give at least one procedure.", "procedures")
    if external_id:
        earlier = Execution.objects.filter(external_id=external_id).first()
        if earlier is not None:
            return ImportResult(earlier, created=False)
    rows: list[dict[str, Any]] = []
    for index, procedure in enumerate(procedures):
        if not isinstance(procedure, Mapping):
            raise ExecutionRejected(f"procedures[{index}] must be an object.", f"procedures[{index}]")
        technique = _value(procedure, "technique_id", index, required=True).strip()
        try:
            validators.validate_technique_id(technique)
        except ValidationError as exc:
            raise ExecutionRejected(
                f"procedures[{index}].technique_id: {exc.messages[0]}", f"procedures[{index}].technique_id"
            ) from None
        started = _time(procedure.get("started_at"), f"procedures[{index}].started_at")
        stopped = _time(procedure.get("stopped_at"), f"procedures[{index}].stopped_at")
        if stopped < started:
            raise ExecutionRejected(
                f"procedures[{index}].stopped_at is before its started_at.", f"procedures[{index}].stopped_at"
            )
        order = procedure.get("order", index + 1)
        if not isinstance(order, int) or isinstance(order, bool) or order < 0:
            raise ExecutionRejected(
                f"procedures[{index}].order must be a whole number, 0 or more.", f"procedures[{index}].order"
            )
        rows.append(
            {
                "order": order,
                "technique_id": technique,
                "name": _value(procedure, "name", index, most=500),
                "procedure_id": _value(procedure, "procedure_id", index, most=64),
                "description": _value(procedure, "description", index),
                "executor": _value(procedure, "executor", index, most=100),
                "command": _value(procedure, "command", index),
                "output": _value(procedure, "output", index),
                "started_at": started,
                "stopped_at": stopped,
            }
        )
    fields = {
        "source": source,
        "target_host": actor.hostname,
        "target_ip": actor.ip_address or "",
        "detection_window_minutes": detection_window_minutes,
        "imported_by": user,
    }
    return _store(external_id[:200], fields, rows, lambda: actor)


def _store(
    external_id: str, fields: dict[str, Any], rows: list[dict[str, Any]], actor_for: Callable[[], Actor]
) -> ImportResult:
    """The execution and its procedures in one transaction (the actor found or created inside it), then queued for
    evaluation."""
    default_minutes = default_detection_window()
    try:
        with transaction.atomic():
            execution = Execution.objects.create(actor=actor_for(), external_id=external_id, **fields)
            Procedure.objects.bulk_create(
                Procedure(
                    execution=execution,
                    window_closes_at=window_closes_at(execution, row["stopped_at"], default_minutes),
                    **row,
                )
                for row in rows
            )
    except IntegrityError:
        # The same execution ID stored at the same moment by another request: that one is the execution.
        earlier = Execution.objects.filter(external_id=external_id).first() if external_id else None
        if earlier is None:
            raise
        return ImportResult(earlier, created=False)
    _queue_evaluation(execution)
    return ImportResult(execution, created=True)


def _queue_evaluation(execution: Execution) -> None:
    """Have the outcome engine look at the new procedures once they are stored."""
    from defender.operations import outcomes  # the engine reads executions: imported here, not at the top

    outcomes.queue_evaluation(execution.pk)
