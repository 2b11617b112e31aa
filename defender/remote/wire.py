"""What travels between the site and a remote node, as JSON, and how a node runs a job.

The messages are described here as TypedDicts and read back by small functions that name the field that is wrong
("steps[2].outcome must be one of passed, failed, skipped"): the site reads a node's answer as untrusted input. This
is the wire format of agent version AGENT_VERSION; an agent of version 1.0 sends the same answers, but checks in
without an ``agent_id`` and is handed its job in the check-in's answer. Fields a message carries beyond these are
ignored, so that a newer agent may add some.

This module imports no models: the agent on a node has no database. Secrets travel only inside a job's settings, to
the one authenticated node the integration is assigned to, over TLS.
"""

import dataclasses
import math
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from defender.enums import JobKind
from defender.services.alerts import (
    MACHINE_NAME_LENGTH,
    AlertsResult,
    Window,
    alert_from_fields,
    alert_to_fields,
    alerts_for_actor,
    with_unreadable,
)
from defender.services.connection import ConnectionSettings, ProxySettings
from defender.services.connectivity import STEP_NAMES, iter_test_steps
from defender.services.errors import DefenderError
from defender.services.steps import FAILED, SKIPPED, Step, StepOutcome, TestResult
from defender.services.transport import RESPONSE_READ_TIMEOUTS
from defender.services.untrusted import STORED_DEPTH, moment, storable_json, text

# The agent version whose messages this module describes; each check-in says which version the node runs.
AGENT_VERSION = "1.2"
# Settings fields an agent before 1.2 does not know (its settings_from_wire refuses unknown fields): left out of the
# jobs handed to such an agent, which then counts its calls against Microsoft's limits as before.
SETTINGS_SINCE_1_2 = ("calls_per_minute", "calls_per_hour")

TEST, ALERTS = JobKind.TEST, JobKind.ALERTS

MAX_AGENT_ID = 64
AGENT_VERSION_LENGTH = 40
MESSAGE_LENGTH = 4000


class WireError(ValueError):
    """A message not in the shape of this wire format. The text names the field and what it must be, never the value
    sent (which is the node's, and may be anything)."""


# --- the messages ---------------------------------------------------------------------------------------------------


class CheckInWire(TypedDict, total=False):
    """Agent to site: "I am here, and hold these jobs; wait up to ``wait`` seconds for work"."""

    agent_version: str
    agent_id: str  # required from version 1.1 on
    wait: float
    holding: list[int]


class IntegrationRefWire(TypedDict):
    id: int
    name: str


class JobWire(TypedDict):
    """Site to agent: one claimed job, with the settings (client secret included) that its node needs to run it."""

    id: int
    kind: str  # a JobKind
    integration: IntegrationRefWire
    settings: dict[str, Any]  # a ConnectionSettings, field by field
    parameters: dict[str, Any]  # for Get alerts: hostnames, since, until
    lease_seconds: int


class CheckInAnswerWire(TypedDict):
    job: JobWire | None  # only to an agent of version 1.0
    work: bool
    poll_interval: int


class StepWire(TypedDict):
    name: str
    outcome: str  # a StepOutcome
    duration_ms: int
    message: str


class TestResultWire(TypedDict):
    steps: list[StepWire]


class AlertsResultWire(TypedDict):
    alerts: list[dict[str, Any]]  # each read as untrusted: an alert that cannot be read is skipped and counted
    tried_names: list[str]
    window: list[str | None]  # since, until (ISO 8601)
    message: str


class AnswerWire(TypedDict):
    """Agent to site: how a job went. A Test has a result even when it failed; a failed Get alerts only an error."""

    ok: bool
    result: TestResultWire | AlertsResultWire | None
    error: str


# --- reading what a node sends ----------------------------------------------------------------------------------------


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise WireError(f"{where} must be an object")
    return value


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"{where} must be text")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise WireError(f"{where} must be a list")
    return value


def _count(value: object, where: str) -> int:
    if type(value) is not int or value < 0:
        raise WireError(f"{where} must be a whole number of 0 or more")
    return value


def _outcome(value: object, where: str) -> StepOutcome:
    if isinstance(value, str) and value in StepOutcome._value2member_map_:
        return StepOutcome(value)
    raise WireError(f"{where} must be one of {', '.join(StepOutcome)}")


@dataclasses.dataclass(frozen=True)
class CheckIn:
    agent_version: str
    agent_id: str | None  # None: an agent of version 1.0
    wait: float  # seconds, not yet capped
    holding: tuple[int, ...]


def read_agent_id(body: Mapping[str, object], *, required: bool) -> str | None:
    """The agent process's own id (several may share a node's token), or None for an agent of version 1.0."""
    agent_id = body.get("agent_id")
    if agent_id is None and not required:
        return None
    if not isinstance(agent_id, str) or not 1 <= len(agent_id) <= MAX_AGENT_ID:
        raise WireError(f"agent_id must be text of 1 to {MAX_AGENT_ID} characters")
    return agent_id


def read_check_in(body: Mapping[str, object]) -> CheckIn:
    holding = body.get("holding", [])
    if not isinstance(holding, list) or not all(type(job_id) is int for job_id in holding):
        raise WireError("holding must be a list of job ids")
    # A wait that is not a finite number (or reads as null: too large for any column) means "do not wait".
    wait = body.get("wait", 0)
    seconds = float(wait) if isinstance(wait, int | float) else 0.0
    return CheckIn(
        agent_version=str(body.get("agent_version", ""))[:AGENT_VERSION_LENGTH],
        agent_id=read_agent_id(body, required=False),
        wait=seconds if math.isfinite(seconds) else 0.0,
        holding=tuple(holding),
    )


@dataclasses.dataclass(frozen=True)
class Answer:
    """A node's answer as read: ``result`` is kept as it came (the site stores it so), ``test`` and ``alerts`` are
    what it says."""

    ok: bool
    result: dict[str, Any] | None
    error: str
    test: TestResult | None = None
    alerts: AlertsResult | None = None


def read_answer(kind: str, body: Mapping[str, object]) -> Answer:
    """The answer to a job of this kind; raises WireError naming the first field that is wrong."""
    ok = body.get("ok")
    if not isinstance(ok, bool):
        raise WireError("ok must be true or false")
    error = _text(body.get("error", ""), "error")[:MESSAGE_LENGTH]
    result = body.get("result")
    if result is not None:
        result = dict(_object(result, "result"))
    if kind == TEST:
        # A Test that could not run at all may come back with only an error.
        test = test_result_from_wire(result) if result is not None else None
        return Answer(ok, result, error, test=test)
    if kind == ALERTS:
        if not ok:
            return Answer(ok, result, error)
        if result is None:
            raise WireError("result must be an object when ok is true")
        return Answer(ok, result, error, alerts=alerts_result_from_wire(result))
    raise WireError(f"the job's kind must be one of {', '.join(JobKind)}")


# --- settings out, results back -----------------------------------------------------------------------------------


def settings_to_wire(settings: ConnectionSettings, agent_version: str = AGENT_VERSION) -> dict[str, Any]:
    """The settings as a job carries them, to an agent of ``agent_version`` (only the fields it reads)."""
    values = dataclasses.asdict(settings)
    if _older_than(agent_version, (1, 2)):
        for name in SETTINGS_SINCE_1_2:
            values.pop(name, None)
    return values


def _older_than(version: str, than: tuple[int, ...]) -> bool:
    """Whether an agent's version text ("1.1") is before ``than``; an unreadable or missing one counts as older."""
    try:
        return tuple(int(part) for part in version.split(".")[:2]) < than
    except ValueError:
        return True


SETTINGS_FIELDS = frozenset(field.name for field in dataclasses.fields(ConnectionSettings))
PROXY_FIELDS = frozenset(field.name for field in dataclasses.fields(ProxySettings))


def settings_from_wire(data: Mapping[str, Any]) -> ConnectionSettings:
    """The settings of a job. Fields this version does not know are ignored, so that a newer site may add some."""
    values = {name: value for name, value in data.items() if name in SETTINGS_FIELDS}
    proxy = values.pop("proxy", None)
    if proxy:
        known = {name: value for name, value in proxy.items() if name in PROXY_FIELDS}
        proxy = ProxySettings(**{**known, "bypass_hosts": tuple(proxy.get("bypass_hosts", ()))})
    return ConnectionSettings(**values, proxy=proxy)


def test_result_to_wire(result: TestResult) -> TestResultWire:
    # The site stores the answer as it comes: only text its database keeps (a step may quote an API's error text).
    answer: TestResultWire = {"steps": [_step_to_wire(step) for step in result.steps]}
    return storable_json(answer)  # type: ignore[return-value]  # the same shape, its texts made storable


def _step_to_wire(step: Step) -> StepWire:
    return {"name": step.name, "outcome": str(step.outcome), "duration_ms": step.duration_ms, "message": step.message}


def test_result_from_wire(data: object) -> TestResult:
    """The Test a node sent; raises WireError naming the first field that is wrong."""
    steps = _list(_object(data, "result").get("steps"), "result.steps")
    read = []
    for index, item in enumerate(steps):
        where = f"steps[{index}]"
        step = _object(item, where)
        read.append(
            Step(
                name=_text(step.get("name"), f"{where}.name"),
                outcome=_outcome(step.get("outcome"), f"{where}.outcome"),
                duration_ms=_count(step.get("duration_ms"), f"{where}.duration_ms"),
                message=_text(step.get("message"), f"{where}.message"),
            )
        )
    return TestResult(tuple(read))


def _time_to_wire(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _time_from_wire(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


# The answer's own levels above an alert's raw JSON: the result, its list of alerts, the alert.
RAW_LEVEL = 3


def alerts_result_to_wire(result: AlertsResult) -> AlertsResultWire:
    alerts = [alert_to_fields(alert) for alert in result.alerts]
    answer: AlertsResultWire = {
        "alerts": alerts,
        "tried_names": list(result.tried_names),
        "window": [_time_to_wire(result.window.since), _time_to_wire(result.window.until)],
        "message": result.message,
    }
    # What Defender sent rides along in each alert's raw JSON: made storable here, so that the site can keep the
    # answer as it arrives (a NUL character from a hostile server would otherwise make PostgreSQL refuse all of it).
    return storable_json(answer, RAW_LEVEL + STORED_DEPTH)  # type: ignore[return-value]  # the same shape


def alerts_result_from_wire(data: object) -> AlertsResult:
    """The AlertsResult a node sent, read as untrusted: alerts it cannot read are skipped and counted in the message.
    Raises WireError (a ValueError) naming the field when the answer as a whole is not in the shape this site reads."""
    answer = _object(data, "result")
    items = _list(answer.get("alerts"), "result.alerts")
    window = answer.get("window")
    since, until = (moment(edge) for edge in window) if isinstance(window, list) and len(window) == 2 else (None, None)
    if since is None or until is None:
        raise WireError("result.window must be two times (ISO 8601), since and until")
    names = answer.get("tried_names")
    tried_names = tuple(text(name, MACHINE_NAME_LENGTH) for name in names) if isinstance(names, list) else ()
    alerts, unreadable = [], 0
    for item in items:
        alert = alert_from_fields(item)
        if alert is None:
            unreadable += 1
        else:
            alerts.append(alert)
    message = with_unreadable(text(answer.get("message"), MESSAGE_LENGTH), unreadable)
    return AlertsResult(alerts, tried_names, Window(since, until), message)


def test_time_bound(connect_timeout: float, read_timeout: float) -> float:
    """The longest a Test may take, in seconds: each step waits on the network once, DNS, TCP and TLS within the
    connect timeout, the token and the API call within one response each (connect timeout plus two read timeouts).

    A node answers every Test within it (see run_test_within), so the site may take a Test that has no answer by then
    (plus a margin for the trip) as lost with its node.
    """
    response = connect_timeout + RESPONSE_READ_TIMEOUTS * read_timeout
    return 3 * connect_timeout + 2 * response


def run_test_within(settings: ConnectionSettings, bound: float) -> TestResult:
    """The Test, ended at ``bound`` seconds: the steps done by then, the running one failed, the rest skipped.

    Retries and slow answers can stretch a Test past the bound its timeouts give; the person waiting (and the site's
    deadline) is told so instead of waiting on. The unfinished step runs on in the background until its own timeouts
    end it, and its outcome is dropped.
    """
    steps: list[Step] = []
    broke: list[Exception] = []
    finished = threading.Event()

    def run() -> None:
        try:
            for step in iter_test_steps(settings):
                steps.append(step)
        except Exception as exc:  # handed to the caller below, as if the Test had run in its thread
            broke.append(exc)
        finally:
            finished.set()

    threading.Thread(target=run, name="remote-test", daemon=True).start()
    finished.wait(bound)
    if broke:
        raise broke[0]
    done = list(steps)
    if finished.is_set() or len(done) == len(STEP_NAMES):
        return TestResult(tuple(done))
    late = Step(
        STEP_NAMES[len(done)],
        FAILED,
        round(bound * 1000),
        f"The Test did not finish within {bound:g} s, the most its connect and read timeouts allow, so the remote "
        "node stopped waiting for it. Try again; if it persists, raise the timeouts in Advanced options.",
    )
    rest = [Step(name, SKIPPED, 0, "Not run: an earlier step failed.") for name in STEP_NAMES[len(done) + 1 :]]
    return TestResult((*done, late, *rest))


def run_job(
    kind: str, settings_data: Mapping[str, Any], parameters: Mapping[str, Any]
) -> tuple[bool, TestResultWire | AlertsResultWire | None, str]:
    """Run one job with the same services a local integration uses; returns ``(ok, result, error)``.

    A Test always has a result (its failed step says what went wrong); an alert lookup that fails has only an error.
    """
    settings = settings_from_wire(settings_data)
    if kind == TEST:
        result = run_test_within(settings, test_time_bound(settings.connect_timeout, settings.read_timeout))
        return result.ok, test_result_to_wire(result), ""
    if kind == ALERTS:
        try:
            found = alerts_for_actor(
                settings,
                parameters["hostnames"],
                _time_from_wire(parameters.get("since")),
                _time_from_wire(parameters.get("until")),
            )
        except DefenderError as error:
            return False, None, str(error)
        return True, alerts_result_to_wire(found), ""
    return False, None, f"This node does not know jobs of kind {kind!r}; update its agent."
