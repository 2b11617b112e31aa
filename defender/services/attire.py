"""ATTiRe 1.1 execution logs, as Invoke-AtomicRedTeam's Attire-ExecutionLogger writes them, read into plain values.

The logger writes (PowerShell's ConvertTo-Json of its objects)::

    {"attire-version": "1.1",
     "execution-data": {"execution-source": "Invoke-Atomicredteam", "execution-id": "<base64 of a GUID>",
                        "execution-category": {"name": "Atomic Red Team", "abbreviation": "ART"},
                        "execution-command": "...", "target": {"user", "host", "ip", "path"},
                        "time-generated": "2026-12-01T10:15:00.000Z"},
     "procedures": [{"mitre-technique-id": "T1003.001", "procedure-name": "...",
                     "procedure-id": {"type": "guid", "id": "<GUID>"}, "procedure-description": "...",
                     "order": 1,
                     "steps": [{"order": 1, "time-start": "...Z", "time-stop": "...Z", "executor": "powershell",
                                "command": "...", "output": [{"content": "...", "level": "STDOUT",
                                                              "type": "console"}]}]}]}

Every error names the field, and the procedure it belongs to, so that whoever wrote the file can find it; a value
from the file is quoted only shortened, and never a whole command.
"""

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

SUPPORTED_VERSIONS = ("1.0", "1.1")
# A run of a few hundred atomics with their output is well under a megabyte; far more is not a log.
MOST_BYTES = 5 * 1024 * 1024
MOST_PROCEDURES = 2000
TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")


class AttireInvalid(ValueError):
    """A log that cannot be imported, with the field (and procedure) that is wrong."""

    def __init__(self, message: str, field: str = "", procedure: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.procedure = procedure


@dataclass(frozen=True)
class Step:
    order: int
    started_at: datetime
    stopped_at: datetime
    executor: str
    command: str
    output: str


@dataclass(frozen=True)
class ProcedureRun:
    order: int
    technique_id: str
    name: str
    procedure_id: str
    description: str
    steps: tuple[Step, ...]

    @property
    def started_at(self) -> datetime:
        return min(step.started_at for step in self.steps)

    @property
    def stopped_at(self) -> datetime:
        return max(step.stopped_at for step in self.steps)

    @property
    def command(self) -> str:
        return "\n".join(step.command for step in self.steps if step.command)

    @property
    def executor(self) -> str:
        return next((step.executor for step in self.steps if step.executor), "")

    @property
    def output(self) -> str:
        return "\n".join(step.output for step in self.steps if step.output)

    def steps_as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "order": step.order,
                "time-start": iso(step.started_at),
                "time-stop": iso(step.stopped_at),
                "executor": step.executor,
                "command": step.command,
                "output": step.output,
            }
            for step in self.steps
        ]


@dataclass(frozen=True)
class ExecutionLog:
    version: str
    execution_id: str
    execution_source: str
    target_host: str
    target_ip: str
    target_user: str
    time_generated: datetime | None
    procedures: tuple[ProcedureRun, ...]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", ".000Z")


def shown(value: Any, most: int = 40) -> str:
    """A value from the file, quoted and shortened, for an error message."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return repr(text if len(text) <= most else text[: most - 1] + "…")


def parse_time(value: Any, field: str, procedure: str = "") -> datetime:
    """An ISO 8601 time; one without a zone is UTC, as the logger writes UTC."""
    if not isinstance(value, str) or not value.strip():
        raise AttireInvalid(
            f"{_where(field, procedure)}: a time is required (ISO 8601, e.g. 2026-12-01T10:15:00.000Z).",
            field,
            procedure,
        )
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise AttireInvalid(
            f"{_where(field, procedure)}: {shown(value)} is not a time"
            " (ISO 8601 expected, e.g. 2026-12-01T10:15:00.000Z).",
            field,
            procedure,
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _where(field: str, procedure: str) -> str:
    return f"{procedure}: {field}" if procedure else field


def load(data: bytes | str) -> Any:
    """The JSON of a file: UTF-8 with or without a byte-order mark (Windows PowerShell writes one)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MOST_BYTES:
        raise AttireInvalid(f"The file is {len(raw) // 1024 // 1024} MB; an ATTiRe log is at most 5 MB.", "file")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            raw = raw.decode("utf-16").encode()
        except UnicodeDecodeError:
            raise AttireInvalid("The file is not UTF-8 or UTF-16 text.", "file") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AttireInvalid(
            f"The file is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", "file"
        ) from None


def _text(
    node: Mapping[str, Any], key: str, field: str, procedure: str = "", required: bool = False, most: int = 0
) -> str:
    value = node.get(key)
    if value is None or value == "":
        if required:
            raise AttireInvalid(f"{_where(field, procedure)} is required.", field, procedure)
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise AttireInvalid(f"{_where(field, procedure)} must be text, not {shown(value)}.", field, procedure)
    value = value.replace("\x00", "")
    if most and len(value) > most:
        raise AttireInvalid(f"{_where(field, procedure)} is longer than {most} characters.", field, procedure)
    return value


def _mapping(value: Any, field: str, procedure: str = "") -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AttireInvalid(f"{_where(field, procedure)} must be an object, not {shown(value)}.", field, procedure)
    return value


def _order(value: Any, field: str, procedure: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AttireInvalid(
            f"{_where(field, procedure)} must be a whole number, not {shown(value)}.", field, procedure
        ) from None
    if number < 0 or number > 2**31 - 1:
        raise AttireInvalid(f"{_where(field, procedure)} must be 0 or more.", field, procedure)
    return number


def _output(value: Any, field: str, procedure: str) -> str:
    """The steps' console output, STDERR marked, as one text."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):  # ConvertTo-Json writes a one-element array as the element on old PowerShell
        value = [value]
    if not isinstance(value, Sequence):
        raise AttireInvalid(f"{_where(field, procedure)} must be a list of outputs.", field, procedure)
    parts = []
    for index, item in enumerate(value):
        item = _mapping(item, f"{field}[{index}]", procedure)
        content = _text(item, "content", f"{field}[{index}].content", procedure)
        if content:
            level = _text(item, "level", f"{field}[{index}].level", procedure)
            parts.append(f"[{level}] {content}" if level and level.upper() != "STDOUT" else content)
    return "\n".join(parts)


def _label(index: int, node: Mapping[str, Any]) -> str:
    """How an error names a procedure: its index, technique and name as the file has them."""
    technique = node.get("mitre-technique-id")
    name = node.get("procedure-name")
    label = f"procedures[{index}]"
    if isinstance(technique, str) and technique:
        label += f" ({technique[:20]}"
        label += f" {shown(name)})" if isinstance(name, str) and name else ")"
    return label


def _procedure(index: int, node: Any) -> ProcedureRun:
    if not isinstance(node, Mapping):
        raise AttireInvalid(f"procedures[{index}] must be an object.", f"procedures[{index}]")
    label = _label(index, node)
    technique = _text(node, "mitre-technique-id", "mitre-technique-id", label, required=True).strip()
    if not TECHNIQUE_ID.match(technique):
        raise AttireInvalid(
            f"{label}: mitre-technique-id {shown(technique)} is not an ATT&CK technique ID (T1059 or T1003.001).",
            "mitre-technique-id",
            label,
        )
    procedure_id = ""
    identity = node.get("procedure-id")
    if isinstance(identity, Mapping):
        procedure_id = _text(identity, "id", "procedure-id.id", label, most=64).strip()
    elif identity not in (None, ""):
        procedure_id = _text(node, "procedure-id", "procedure-id", label, most=64).strip()
    if procedure_id:
        try:
            uuid.UUID(procedure_id)
        except ValueError:
            raise AttireInvalid(
                f"{label}: procedure-id.id {shown(procedure_id)} is not a GUID.", "procedure-id.id", label
            ) from None
    raw_steps = node.get("steps")
    if isinstance(raw_steps, Mapping):
        raw_steps = [raw_steps]
    if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str) or not raw_steps:
        raise AttireInvalid(f"{label}: steps must list at least one step.", "steps", label)
    steps = []
    for number, step in enumerate(raw_steps):
        field = f"steps[{number}]"
        step = _mapping(step, field, label)
        started = parse_time(step.get("time-start"), f"{field}.time-start", label)
        stopped = parse_time(step.get("time-stop"), f"{field}.time-stop", label)
        if stopped < started:
            raise AttireInvalid(f"{label}: {field}.time-stop is before its time-start.", f"{field}.time-stop", label)
        steps.append(
            Step(
                order=_order(step.get("order"), f"{field}.order", label, number + 1),
                started_at=started,
                stopped_at=stopped,
                executor=_text(step, "executor", f"{field}.executor", label, most=100),
                command=_text(step, "command", f"{field}.command", label),
                output=_output(step.get("output"), f"{field}.output", label),
            )
        )
    steps.sort(key=lambda s: (s.order, s.started_at))
    return ProcedureRun(
        order=_order(node.get("order"), "order", label, index + 1),
        technique_id=technique,
        name=_text(node, "procedure-name", "procedure-name", label, most=500),
        procedure_id=procedure_id,
        description=_text(node, "procedure-description", "procedure-description", label),
        steps=tuple(steps),
    )


def parse(document: Any) -> ExecutionLog:
    """An ATTiRe log read from its JSON, or AttireInvalid naming what is wrong."""
    if not isinstance(document, Mapping):
        raise AttireInvalid(
            "An ATTiRe log is a JSON object with attire-version, execution-data and procedures.", "file"
        )
    version = document.get("attire-version")
    if version is None:
        raise AttireInvalid("attire-version is required: this does not look like an ATTiRe log.", "attire-version")
    version = str(version).strip()
    if version not in SUPPORTED_VERSIONS:
        raise AttireInvalid(
            f"attire-version {shown(version)} is not supported; this site reads ATTiRe 1.0 and 1.1.", "attire-version"
        )
    data = _mapping(document.get("execution-data"), "execution-data")
    target = data.get("target") or {}
    target = _mapping(target, "execution-data.target")
    generated = data.get("time-generated")
    raw_procedures = document.get("procedures")
    if not isinstance(raw_procedures, Sequence) or isinstance(raw_procedures, str):
        raise AttireInvalid("procedures must be a list.", "procedures")
    if not raw_procedures:
        raise AttireInvalid("procedures is empty: the log records no procedure to evaluate.", "procedures")
    if len(raw_procedures) > MOST_PROCEDURES:
        raise AttireInvalid(
            f"procedures lists {len(raw_procedures)}; at most {MOST_PROCEDURES} in one log.", "procedures"
        )
    return ExecutionLog(
        version=version,
        execution_id=_text(data, "execution-id", "execution-data.execution-id", required=True, most=200).strip(),
        execution_source=_text(data, "execution-source", "execution-data.execution-source", most=200),
        target_host=_text(target, "host", "execution-data.target.host", most=253).strip(),
        target_ip=_text(target, "ip", "execution-data.target.ip", most=64).strip(),
        target_user=_text(target, "user", "execution-data.target.user", most=256).strip(),
        time_generated=parse_time(generated, "execution-data.time-generated") if generated else None,
        procedures=tuple(_procedure(index, node) for index, node in enumerate(raw_procedures)),
    )
