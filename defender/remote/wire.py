"""What travels between the site and a remote node, as JSON-able dicts, and how a node runs a job.

This module imports no models: the agent on a node has no database. Secrets travel only inside a job's settings, to
the one authenticated node the integration is assigned to, over TLS.
"""

import dataclasses
import threading
from datetime import datetime

from defender.services.alerts import (
    MACHINE_NAME_LENGTH,
    AlertsResult,
    Window,
    alert_from_fields,
    alert_to_fields,
    alerts_for_actor,
    with_unreadable,
)
from defender.services.client import RESPONSE_READ_TIMEOUTS
from defender.services.connection import ConnectionSettings, ProxySettings
from defender.services.connectivity import STEP_NAMES, iter_test_steps
from defender.services.errors import DefenderError
from defender.services.steps import FAILED, SKIPPED, Step, TestResult
from defender.services.untrusted import STORED_DEPTH, moment, storable_json, text

TEST = "test"
ALERTS = "alerts"


def settings_to_wire(settings):
    return dataclasses.asdict(settings)


def settings_from_wire(data):
    data = dict(data)
    proxy = data.pop("proxy", None)
    if proxy:
        proxy = ProxySettings(**{**proxy, "bypass_hosts": tuple(proxy.get("bypass_hosts", ()))})
    return ConnectionSettings(**data, proxy=proxy)


def test_result_to_wire(result):
    # The site stores the answer as it comes: only text its database keeps (a step may quote an API's error text).
    return storable_json({"steps": [dataclasses.asdict(step) for step in result.steps]})


def test_result_from_wire(data):
    return TestResult(tuple(Step(**step) for step in data["steps"]))


def _time_to_wire(moment):
    return moment.isoformat() if moment else None


def _time_from_wire(text):
    return datetime.fromisoformat(text) if text else None


# The answer's own levels above an alert's raw JSON: the result, its list of alerts, the alert.
RAW_LEVEL = 3
MESSAGE_LENGTH = 4000


def alerts_result_to_wire(result):
    alerts = [alert_to_fields(alert) for alert in result.alerts]
    answer = {
        "alerts": alerts,
        "tried_names": list(result.tried_names),
        "window": [_time_to_wire(result.window.since), _time_to_wire(result.window.until)],
        "message": result.message,
    }
    # What Defender sent rides along in each alert's raw JSON: made storable here, so that the site can keep the
    # answer as it arrives (a NUL character from a hostile server would otherwise make PostgreSQL refuse all of it).
    return storable_json(answer, RAW_LEVEL + STORED_DEPTH)


def alerts_result_from_wire(data):
    """The AlertsResult a node sent, read as untrusted: alerts it cannot read are skipped and counted in the message.
    Raises ValueError when the answer as a whole is not in the shape this site reads."""
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise ValueError("the answer has no list of alerts")
    window = data.get("window")
    since, until = (moment(edge) for edge in window) if isinstance(window, list) and len(window) == 2 else (None, None)
    if since is None or until is None:
        raise ValueError("the answer's window is not two times")
    names = data.get("tried_names")
    tried_names = tuple(text(name, MACHINE_NAME_LENGTH) for name in names) if isinstance(names, list) else ()
    alerts, unreadable = [], 0
    for item in data["alerts"]:
        alert = alert_from_fields(item)
        if alert is None:
            unreadable += 1
        else:
            alerts.append(alert)
    message = with_unreadable(text(data.get("message"), MESSAGE_LENGTH), unreadable)
    return AlertsResult(alerts, tried_names, Window(since, until), message)


def test_time_bound(connect_timeout: float, read_timeout: float) -> float:
    """The longest a Test may take, in seconds: each step waits on the network once, DNS, TCP and TLS within the
    connect timeout, the token and the API call within one response each (connect timeout plus two read timeouts).

    A node answers every Test within it (see run_test_within), so the site may take a Test that has no answer by then
    (plus a margin for the trip) as lost with its node.
    """
    response = connect_timeout + RESPONSE_READ_TIMEOUTS * read_timeout
    return 3 * connect_timeout + 2 * response


def run_test_within(settings, bound):
    """The Test, ended at ``bound`` seconds: the steps done by then, the running one failed, the rest skipped.

    Retries and slow answers can stretch a Test past the bound its timeouts give; the person waiting (and the site's
    deadline) is told so instead of waiting on. The unfinished step runs on in the background until its own timeouts
    end it, and its outcome is dropped.
    """
    steps, broke = [], []
    finished = threading.Event()

    def run():
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


def run_job(kind, settings_data, parameters):
    """Run one job with the same services a local integration uses; returns ``(ok, result, error)``.

    A Test always has a result (its failed step says what went wrong); an alert lookup that fails has only an error.
    """
    settings = settings_from_wire(settings_data)
    if kind == TEST:
        result = run_test_within(settings, test_time_bound(settings.connect_timeout, settings.read_timeout))
        return result.ok, test_result_to_wire(result), ""
    if kind == ALERTS:
        try:
            result = alerts_for_actor(
                settings,
                parameters["hostnames"],
                _time_from_wire(parameters.get("since")),
                _time_from_wire(parameters.get("until")),
            )
        except DefenderError as error:
            return False, None, str(error)
        return True, alerts_result_to_wire(result), ""
    return False, None, f"This node does not know jobs of kind {kind!r}; update its agent."
