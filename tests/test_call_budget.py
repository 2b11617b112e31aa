"""The call budget per app, tenant and API: its windows, the smallest limit of the integrations sharing it, a 429's
pause, background work giving way to a person, the message when it is spent, and Settings > System. The windows are
proved on a clock the test moves; the calls against the simulator over real sockets."""

from datetime import UTC, datetime

import pytest

from defender.remote import wire
from defender.services import auth, budget
from defender.services.alerts import alerts_for_actor
from defender.services.client import ApiClient
from defender.services.connectivity import iter_test_steps
from defender.services.errors import Throttled
from defender.services.process import PROCESS
from defender.services.steps import FAILED
from tests.factories import CLIENT_SECRET, make_integration, simulator_integration
from tests.fixtures.connection import settings_for


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def a_budget(per_minute=3, per_hour=None, name="Defender EU"):
    return budget.Budget(budget.budget_key("app", "tenant", "mde"), "mde", per_minute, per_hour, name)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def counted(clock):
    """An in-process count on the test's clock; a call that finds the budget spent fails at once."""
    backend = budget.InProcess(clock)
    budget.use(backend, wait_seconds=0)
    yield backend
    budget.use(budget.InProcess(), wait_seconds=budget.DEFAULT_WAIT_SECONDS)


def test_the_minute_window_slides_and_frees_when_its_oldest_call_is_a_minute_old(counted, clock):
    spent = a_budget(per_minute=3)
    for _ in range(2):
        assert counted.ask(spent, False, "w").taken
    clock.now += 30
    assert counted.ask(spent, False, "w").taken
    refused = counted.ask(spent, False, "w")
    assert (refused.taken, refused.reason, refused.wait) == (False, "minute", 30)
    clock.now += 30  # the first two calls leave the window
    assert counted.ask(spent, False, "w").taken
    assert counted.ask(spent, False, "w").taken
    assert not counted.ask(spent, False, "w").taken
    assert counted.usage(spent.key).minute == 3


def test_the_hour_window_holds_when_every_minute_has_room(counted, clock):
    spent = a_budget(per_minute=100, per_hour=4)
    for _ in range(4):
        assert counted.ask(spent, False, "w").taken
        clock.now += 600
    refused = counted.ask(spent, False, "w")
    assert (refused.reason, refused.wait) == ("hour", 1200)
    clock.now += 1200
    assert counted.ask(spent, False, "w").taken
    assert counted.usage(spent.key).hour == 4


def test_budgets_are_keyed_by_app_tenant_and_api_never_by_the_secret():
    key = budget.budget_key("App-ID", "Tenant-ID", "mde")
    assert key == budget.budget_key("app-id ", "tenant-id", "mde")  # IDs are case-blind, as Microsoft's
    assert key != budget.budget_key("app-id", "tenant-id", "graph")
    assert key != budget.budget_key("app-id", "other-tenant", "mde")
    settings = settings_for_values(client_secret=CLIENT_SECRET)
    assert CLIENT_SECRET not in repr(budget.budget_for(settings))
    assert budget.budget_for(settings).key == budget.budget_for(settings_for_values(client_secret="other")).key


def settings_for_values(**values):
    from defender.services.connection import ConnectionSettings

    base = {"flavour": "mde", "host": "api.security.microsoft.com", "client_id": "app", "tenant_id": "tenant"}
    return ConnectionSettings(**{**base, "auth_url": "https://login.microsoftonline.com", **values})


def test_microsofts_documented_limits_apply_when_none_is_set():
    assert budget.budget_for(settings_for_values()).limits(False) == (100, 1500)
    assert budget.budget_for(settings_for_values(flavour="siem")).limits(False) == (100, 1500)
    graph = budget.budget_for(settings_for_values(flavour="graph"))
    assert (graph.per_minute, graph.per_hour) == (150, None)
    assert budget.budget_for(settings_for_values(calls_per_minute=10, calls_per_hour=50)).limits(False) == (10, 50)


@pytest.mark.django_db
def test_integrations_sharing_an_app_and_tenant_keep_to_the_smallest_limit_set():
    first = make_integration(name="Defender A", calls_per_minute=20)
    second = make_integration(name="Defender B", calls_per_minute=7, calls_per_hour=900)
    unset = make_integration(name="Defender C")
    other_tenant = make_integration(name="Defender D", tenant_id="contoso.onmicrosoft.com", calls_per_minute=30)
    for shared in (first, second, unset):
        assert (shared.to_settings().calls_per_minute, shared.to_settings().calls_per_hour) == (7, 900)
    assert (other_tenant.to_settings().calls_per_minute, other_tenant.to_settings().calls_per_hour) == (30, None)
    assert budget.budget_for(first.to_settings()).key == budget.budget_for(unset.to_settings()).key


def test_a_spent_budget_says_which_budget_and_when_it_frees(counted, clock):
    spent = a_budget(per_minute=2)
    budget.take(spent)
    clock.now += 15
    budget.take(spent)
    with pytest.raises(budget.BudgetSpent) as failure:
        budget.take(spent)
    frees = datetime.fromtimestamp(clock.now + 45, UTC)
    assert str(failure.value).startswith(
        f"The Defender API call budget of Defender EU (this app and tenant) of 2 calls a minute is spent; it frees at "
        f"{frees:%H:%M:%S} UTC."
    )
    assert failure.value.retry_at == frees
    assert isinstance(failure.value, Throttled) and failure.value.code == 429


def test_a_caller_waits_for_the_slot_when_it_frees_within_the_wait(counted, clock):
    spent = a_budget(per_minute=1)
    budget.take(spent)
    budget.use(counted, wait_seconds=90)
    slept = []

    def sleep(seconds):  # the clock moves as the caller sleeps
        slept.append(seconds)
        clock.now += seconds

    budget.take(spent, sleep=sleep)
    assert slept == [60]
    assert counted.usage(spent.key).minute == 1


def test_background_work_keeps_to_80_percent_of_each_window(counted):
    spent = a_budget(per_minute=5, per_hour=10)
    assert spent.limits(background=True) == (4, 8)
    with budget.background():
        for _ in range(4):
            budget.take(spent)
        with pytest.raises(budget.BudgetSpent):
            budget.take(spent)
    budget.take(spent)  # the fifth slot is a person's


def test_background_work_takes_no_slot_while_an_interactive_caller_waits(counted, clock):
    spent = a_budget(per_minute=5)
    for _ in range(5):
        assert counted.ask(spent, False, "person").taken
    # A person's Test finds the minute full and waits; the minute then frees.
    assert counted.ask(spent, False, "person").reason == "minute"
    clock.now += 60
    with budget.background(), pytest.raises(budget.BudgetSpent) as failure:
        budget.take(spent)
    assert "in use by interactive work; this background call gave way" in str(failure.value)
    assert counted.ask(spent, False, "person").taken  # the person goes first
    assert counted.ask(spent, True, "sweep").taken  # then background work has its share again


def test_a_429_pauses_the_budget_for_every_integration_of_the_app_and_tenant(clean_simulator):
    clean_simulator.faults.set(throttle_every=1, retry_after=600)
    first = settings_for(clean_simulator, max_retries=0, name="Defender A")
    second = settings_for(clean_simulator, name="Defender B")
    api = ApiClient(first, auth.TokenSource(first))
    with pytest.raises(Throttled) as throttled:
        api.get_json(api.url("/api/alerts"), {"$top": 1})
    assert not isinstance(throttled.value, budget.BudgetSpent)
    clean_simulator.faults.clear()
    other = ApiClient(second, auth.TokenSource(second))
    with pytest.raises(budget.BudgetSpent) as paused:
        other.get_json(other.url("/api/alerts"), {"$top": 1})
    assert "The Defender API call budget of Defender B (this app and tenant) is paused until" in str(paused.value)
    assert [record.status for record in clean_simulator.requests if record.kind == "api"] == [429]
    # Graph is another budget: its calls go on.
    graph = settings_for(clean_simulator, flavour="graph")
    assert ApiClient(graph, auth.TokenSource(graph)).get_json(graph.base_url + "/v1.0/security/alerts_v2")


def test_token_requests_take_no_slot(clean_simulator, counted):
    PROCESS.clear()  # no token kept: the first call needs one from Entra ID
    settings = settings_for(clean_simulator, calls_per_minute=5)
    api = ApiClient(settings, auth.TokenSource(settings))
    api.get_json(api.url("/api/alerts"), {"$top": 1})
    api.get_json(api.url("/api/alerts"), {"$top": 1})
    assert clean_simulator.token_requests == 1
    assert clean_simulator.api_calls == 2
    assert counted.usage(api.budget.key).minute == 2


def test_a_test_with_its_budget_spent_fails_its_api_step_with_the_budgets_message(clean_simulator, counted):
    settings = settings_for(clean_simulator, calls_per_minute=1)
    budget.take(budget.budget_for(settings))
    steps = list(iter_test_steps(settings))
    failed = [step for step in steps if step.outcome == FAILED]
    assert failed, steps
    assert "of 1 call a minute is spent; it frees at" in failed[0].message


def test_get_alerts_with_its_budget_spent_is_a_service_error_not_a_crash(clean_simulator, counted):
    settings = settings_for(clean_simulator, calls_per_minute=1)
    budget.take(budget.budget_for(settings))
    with pytest.raises(budget.BudgetSpent) as failure:
        alerts_for_actor(settings, ["fin-ws-01"])
    assert "call budget of Simulator mde" in str(failure.value)
    assert [record for record in clean_simulator.requests if record.kind == "api"] == []


def test_a_node_of_an_older_agent_gets_no_budget_fields_and_newer_fields_are_ignored():
    settings = settings_for_values(calls_per_minute=10, calls_per_hour=100)
    assert "calls_per_minute" not in wire.settings_to_wire(settings, agent_version="1.1")
    carried = wire.settings_to_wire(settings)
    assert wire.settings_from_wire({**carried, "a_field_of_a_newer_site": 1}) == settings


@pytest.mark.django_db
def test_settings_system_lists_each_budget_with_its_use_and_pause(admin_client, simulator):
    first = simulator_integration(simulator, name="Defender A", calls_per_minute=10)
    simulator_integration(simulator, name="Defender B", calls_per_minute=20, calls_per_hour=300)
    make_integration(name="Defender C", api_flavour="graph", host="graph.microsoft.com")
    shared = budget.budget_for(first.to_settings())
    for _ in range(3):
        budget.take(shared)
    budget.pause(shared, 120)
    html = admin_client.get("/settings/system/").content.decode()
    assert "Call budgets" in html
    row = html[html.index("Defender A") : html.index("Defender C")]
    assert "Defender B" in row and "Defender API" in row
    assert "3 of 10" in row and "3 of 300" in row and "the API answered 429" in row
    graph_row = html[html.index("Defender C") :]
    assert "0 of 150" in graph_row and "no hourly limit" in graph_row
    assert CLIENT_SECRET not in html and simulator.app.client_secret not in html


@pytest.mark.django_db
def test_a_limit_out_of_range_is_refused_with_a_clear_message():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        make_integration(calls_per_minute=0, calls_per_hour=10**7)
    assert refused.value.message_dict["calls_per_minute"] == [
        "Enter between 1 and 10,000 calls a minute, or leave it blank."
    ]
    assert refused.value.message_dict["calls_per_hour"] == [
        "Enter between 1 and 600,000 calls an hour, or leave it blank."
    ]


@pytest.mark.django_db
def test_advanced_hunting_takes_from_the_tenants_hunting_budget_not_the_alert_apis(clean_simulator, counted):
    from defender.services import hunting

    settings = settings_for(clean_simulator, name="Defender A")
    graph = settings_for(clean_simulator, flavour="graph", name="Defender G")
    query = 'DeviceProcessEvents | where FileName == "cmd.exe" | take 1'

    hunting.run(settings, query)
    hunting.run(graph, query)

    shared = budget.hunting_budget_for(settings)
    assert shared.key == budget.hunting_budget_for(graph).key
    assert (shared.per_minute, shared.per_hour, shared.label) == (45, 1500, "Advanced hunting")
    assert counted.usage(shared.key).minute == 2  # both apps' queries: one per-tenant count
    assert counted.usage(budget.budget_for(settings).key).minute == 0
    assert counted.usage(budget.budget_for(graph).key).minute == 0


@pytest.mark.django_db
def test_settings_system_lists_each_tenants_hunting_budget(admin_client, simulator):
    simulator_integration(simulator, name="Defender A", calls_per_minute=30)
    simulator_integration(simulator, name="Defender B")
    make_integration(name="Defender S", api_flavour="siem", host="wdatp-alertexporter-eu.securitycenter.windows.com")
    budget.take(budget.hunting_budget_for(settings_for(simulator)))

    html = admin_client.get("/settings/system/").content.decode()

    row = next(row for row in html.split("<tr>") if "Advanced hunting" in row)
    assert "Defender A" in row and "Defender B" in row and "Defender S" not in row
    assert "1 of 30" in row and "1 of 1500" in row  # the lower of Microsoft's 45 and the limit set on Defender A
