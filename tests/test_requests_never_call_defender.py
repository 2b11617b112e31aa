"""No page waits on Defender: every button that reaches Defender, Entra ID or a proxy queues a task and answers at
once. Proved twice: with no worker, the simulator and the proxy see nothing while the requests are served; and no
view module imports a service that reaches the network (the import graph)."""

import ast
from pathlib import Path

import pytest
from django.urls import reverse

from defender.models import Job, TestRun
from tests.factories import make_actor, make_proxy_rule, simulator_form_data, simulator_integration

VIEWS = Path(__file__).resolve().parent.parent / "defender" / "views"
# The services that open connections: to Entra ID and Defender, or to a proxy.
NETWORK_SERVICES = {
    f"defender.services.{name}" for name in ("connectivity", "alerts", "client", "auth", "proxy_check", "transport")
}


@pytest.fixture
def queued_only(transactional_db, settings, celery_in_memory):
    """Tasks go to the suite's in-memory broker, where no worker takes them (committed rows, so that the site really
    sends them); the queue is emptied afterwards, so that no later test's worker runs them."""
    settings.TASKS_RUN_INLINE = False
    yield
    with celery_in_memory.connection_for_write() as connection:
        connection.default_channel.queue_purge(celery_in_memory.conf.task_default_queue)


def test_no_button_that_reaches_defender_calls_it_during_the_request(queued_only, admin_client, clean_simulator, proxy):
    simulator = clean_simulator
    integration = simulator_integration(simulator)
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    rule = make_proxy_rule(host=proxy.host, port=proxy.port)
    typed = simulator_form_data(simulator, name="Typed")
    presses = [
        ("Test", reverse("defender:integration-test", args=[integration.pk]), {}),
        ("Get alerts", reverse("defender:actor-get-alerts", args=[actor.pk]), {"integrations": [integration.pk]}),
        ("Test of typed values", reverse("defender:integration-add-test", args=["defender_atp"]), typed),
        ("Test of a proxy rule", reverse("defender:proxyrule-test", args=[rule.pk]), {}),
    ]

    for name, url, data in presses:
        response = admin_client.post(url, {"window": "30d", **data})
        assert response.status_code in (200, 302, 303), f"{name}: {response.status_code}"

    assert simulator.requests == []
    assert proxy.connections == 0
    # Each was queued, and waits for a worker.
    assert TestRun.objects.filter(finished_at=None).count() == 3
    assert Job.objects.get(kind=Job.Kind.ALERTS).state == Job.State.QUEUED


def imported_modules(path):
    """Every module a file imports, by its full name (``from defender.services import auth`` -> both names)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_view_module_imports_a_service_that_reaches_the_network():
    modules = sorted(VIEWS.glob("*.py"))
    assert len(modules) > 5

    reaching = {path.name: sorted(imported_modules(path) & NETWORK_SERVICES) for path in modules}

    assert {name: found for name, found in reaching.items() if found} == {}
