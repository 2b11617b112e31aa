"""What travels between the site and a remote node, as JSON-able dicts, and how a node runs a job.

This module imports no models: the agent on a node has no database. Secrets travel only inside a job's settings, to
the one authenticated node the integration is assigned to, over TLS.
"""

import dataclasses
from datetime import datetime

from defender.services.alerts import Alert, AlertsResult, Window, alerts_for_actor
from defender.services.connection import ConnectionSettings, ProxySettings
from defender.services.connectivity import Step, TestResult, run_test
from defender.services.errors import DefenderError

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
    return {"steps": [dataclasses.asdict(step) for step in result.steps]}


def test_result_from_wire(data):
    return TestResult(tuple(Step(**step) for step in data["steps"]))


def _time_to_wire(moment):
    return moment.isoformat() if moment else None


def _time_from_wire(text):
    return datetime.fromisoformat(text) if text else None


TIME_FIELDS = ("created", "first_event", "last_event")


def alerts_result_to_wire(result):
    alerts = []
    for alert in result.alerts:
        item = {field.name: getattr(alert, field.name) for field in dataclasses.fields(Alert)}
        for name in TIME_FIELDS:
            item[name] = _time_to_wire(item[name])
        item["mitre_techniques"] = list(item["mitre_techniques"])
        alerts.append(item)
    return {
        "alerts": alerts,
        "tried_names": list(result.tried_names),
        "window": [_time_to_wire(result.window.since), _time_to_wire(result.window.until)],
        "message": result.message,
    }


def alerts_result_from_wire(data):
    alerts = []
    for item in data["alerts"]:
        item = dict(item)
        for name in TIME_FIELDS:
            item[name] = _time_from_wire(item[name])
        item["mitre_techniques"] = tuple(item["mitre_techniques"])
        alerts.append(Alert(**item))
    since, until = (_time_from_wire(moment) for moment in data["window"])
    return AlertsResult(alerts, tuple(data["tried_names"]), Window(since, until), data["message"])


def run_job(kind, settings_data, parameters):
    """Run one job with the same services a local integration uses; returns ``(ok, result, error)``.

    A Test always has a result (its failed step says what went wrong); an alert lookup that fails has only an error.
    """
    settings = settings_from_wire(settings_data)
    if kind == TEST:
        result = run_test(settings)
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
