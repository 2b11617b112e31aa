"""Input no form or table was made for gives a clear answer, never a server error: page sizes out of range, and ids
too large for any database column in the choices of a form."""

import importlib
import inspect
import pkgutil

import django_tables2
import pytest
from django import forms

import defender.forms
import defender.tables
from defender.forms import choices
from defender.models import Integration, RemoteNode
from defender.tables.paging import PER_PAGE_MAX, PER_PAGE_MIN, ConsoleTable
from tests.factories import integration_form_data, make_actor, make_integration, make_proxy_rule

pytestmark = pytest.mark.django_db

# Past 64 bits: SQLite cannot even bind it, PostgreSQL refuses it as out of range.
HUGE_ID = "99999999999999999999999"


def submodules(package):
    return [
        importlib.import_module(f"{package.__name__}.{info.name}") for info in pkgutil.iter_modules(package.__path__)
    ]


def classes_in(package, base):
    return {
        cls
        for module in submodules(package)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, base) and cls.__module__ == module.__name__
    }


# Paging


@pytest.fixture
def table_pages(admin_client):
    """Every page with a table, each with more rows than the smallest page size."""
    actor = make_actor()
    rule = make_proxy_rule()
    from defender import alert_store
    from tests.test_alert_store import defender_alert

    integrations = [make_integration(name=f"Defender {n:02}", proxy_rule=rule) for n in range(PER_PAGE_MIN + 2)]
    for n in range(PER_PAGE_MIN + 2):
        make_proxy_rule(name=f"Proxy {n:02}")
        make_actor(name=f"Actor {n:02}", hostname=f"ws-{n:02}")
        RemoteNode.objects.create(name=f"node-{n:02}")
    alert_store.store_alerts(actor, integrations[0], [defender_alert(f"da{n}") for n in range(PER_PAGE_MIN + 2)])
    return [
        "/settings/integrations/",
        "/settings/proxy-rules/",
        "/settings/remote-nodes/",
        "/actors/",
        f"/actors/{actor.pk}/",
    ]


def rows_shown(response):
    return len(response.context["table"].page.object_list)


@pytest.mark.parametrize("per_page", ["-1", "-100", "1"])
def test_a_page_size_below_the_range_shows_the_smallest_page(admin_client, table_pages, per_page):
    for url in table_pages:
        response = admin_client.get(url, {"per_page": per_page})
        assert response.status_code == 200, url
        assert rows_shown(response) == PER_PAGE_MIN, url


def test_a_huge_page_size_shows_at_most_the_largest_page(admin_client, table_pages, settings):
    for url in table_pages:
        response = admin_client.get(url, {"per_page": "10000"})
        assert response.status_code == 200, url
        assert response.context["table"].paginator.per_page == PER_PAGE_MAX, url


@pytest.mark.parametrize("per_page", ["0", "abc", "", HUGE_ID, "1e9"])
def test_a_page_size_that_is_not_a_number_keeps_the_default(admin_client, table_pages, per_page):
    for url in table_pages:
        response = admin_client.get(url, {"per_page": per_page})
        assert response.status_code == 200, url
        assert PER_PAGE_MIN <= response.context["table"].paginator.per_page <= PER_PAGE_MAX, url


def test_every_table_of_the_console_clamps_its_page_size():
    tables = classes_in(defender.tables, django_tables2.Table) - {ConsoleTable}
    assert len(tables) >= 5
    for table in tables:
        assert issubclass(table, ConsoleTable), f"{table.__name__} pages as ?per_page= says"


# Ids too large for a database column


def test_every_model_choice_field_of_the_forms_refuses_ids_out_of_range():
    fields = [
        (form.__name__, name, field)
        for form in classes_in(defender.forms, forms.BaseForm)
        for name, field in form.base_fields.items()
        if isinstance(field, forms.ModelChoiceField)
    ]
    assert len(fields) >= 4
    for form, name, field in fields:
        assert isinstance(field, choices.KeyRangeMixin), f"{form}.{name} is a plain Django model choice field"


def posted(admin_client, url, data):
    response = admin_client.post(url, data)
    assert response.status_code == 200, f"{url} answered {response.status_code}"
    return response.context["form"] if "form" in response.context else response.context["fetch_form"]


@pytest.mark.parametrize("field", ["proxy_rule", "remote_node"])
def test_an_integration_form_with_a_huge_id_says_it_is_not_a_choice(admin_client, field):
    RemoteNode.objects.create(name="dmz-node")
    location = "remote" if field == "remote_node" else "local"
    form = posted(
        admin_client,
        "/settings/integrations/add/defender_atp/",
        integration_form_data(location=location, **{field: HUGE_ID}),
    )
    assert "Select a valid choice. That choice is not one of the available choices." in form.errors[field]
    assert not Integration.objects.exists()


def test_editing_an_integration_with_a_huge_id_keeps_what_was_saved(admin_client):
    integration = make_integration()
    form = posted(
        admin_client, f"/settings/integrations/{integration.pk}/edit/", integration_form_data(proxy_rule=HUGE_ID)
    )
    assert "proxy_rule" in form.errors
    integration.refresh_from_db()
    assert integration.proxy_rule is None


def test_the_assignment_page_with_a_huge_id_says_it_is_not_a_choice(admin_client):
    rule = make_proxy_rule()
    integration = make_integration()
    form = posted(
        admin_client, f"/settings/proxy-rules/{rule.pk}/integrations/", {"integrations": [integration.pk, HUGE_ID]}
    )
    assert form.errors["integrations"] == [f"Select a valid choice. {HUGE_ID} is not one of the available choices."]
    integration.refresh_from_db()
    assert integration.proxy_rule is None


def test_get_alerts_with_a_huge_integration_id_says_it_is_not_a_choice(admin_client):
    actor = make_actor()
    make_integration()
    form = posted(admin_client, f"/actors/{actor.pk}/alerts/", {"integrations": [HUGE_ID], "window": "24h"})
    assert form.errors["integrations"] == [f"Select a valid choice. {HUGE_ID} is not one of the available choices."]


@pytest.mark.parametrize("value", ["-99999999999999999999999", "9223372036854775808"])
def test_ids_just_past_the_column_either_way_are_refused_too(value):
    field = choices.ModelMultipleChoiceField(Integration.objects.all())
    with pytest.raises(forms.ValidationError, match="is not one of the available choices"):
        field.clean([value])


def test_an_id_within_the_column_is_looked_up_as_before():
    integration = make_integration()
    field = choices.ModelMultipleChoiceField(Integration.objects.all())
    assert list(field.clean([str(integration.pk)])) == [integration]
    with pytest.raises(forms.ValidationError, match="9223372036854775807 is not one of the available choices"):
        field.clean(["9223372036854775807"])
