"""After an error the Add/Edit form works as before: the typed secret is kept without being sent back in clear, a
Test's address never ends on a blank page, and a Test that ran on the form is recorded when Submit saves the same
values."""

import time

import pytest
from django.urls import reverse

from defender import encryption
from defender.forms import typed_secrets
from defender.models import Integration
from tests.conftest import PASSWORD
from tests.factories import TYPED_SECRET, integration_form_data, make_integration, simulator_form_data

ADD = reverse("defender:integration-add", args=["defender_atp"])
ADD_TEST = reverse("defender:integration-add-test", args=["defender_atp"])


def kept_token(html):
    marker = 'name="client_secret_kept" value="'
    assert marker in html, "the page carries no kept secret"
    return html.split(marker, 1)[1].split('"', 1)[0]


def test_a_secret_typed_into_a_form_with_errors_is_kept_without_being_sent_back(admin_client):
    html = admin_client.post(ADD, integration_form_data(port="70000")).content.decode()
    assert "Enter a port between 1 and 65535." in html
    assert TYPED_SECRET not in html
    assert "The secret you typed is kept" in html
    token = kept_token(html)

    fixed = integration_form_data(client_secret="", client_secret_kept=token)
    response = admin_client.post(ADD, fixed)
    assert response.status_code == 302
    assert Integration.objects.get().client_secret == TYPED_SECRET


def test_a_kept_secret_is_refused_to_another_user(admin_client, client, django_user_model):
    token = kept_token(admin_client.post(ADD, integration_form_data(port="70000")).content.decode())
    other = django_user_model.objects.create_superuser("bob-admin", password=PASSWORD)
    client.force_login(other)
    html = client.post(ADD, integration_form_data(client_secret="", client_secret_kept=token)).content.decode()
    assert "This field is required." in html
    assert not Integration.objects.exists()


@pytest.mark.parametrize("age_seconds", [typed_secrets.KEEP_SECONDS + 60])
def test_a_kept_secret_expires(admin_client, admin_user, age_seconds):
    payload = f'{{"secret": "{TYPED_SECRET}", "user": {admin_user.pk}, "form": "IntegrationForm:new"}}'
    stale = encryption.fernet().encrypt_at_time(payload.encode(), int(time.time()) - age_seconds).decode()
    html = admin_client.post(ADD, integration_form_data(client_secret="", client_secret_kept=stale)).content.decode()
    assert "This field is required." in html
    assert not Integration.objects.exists()


def test_a_forged_kept_secret_is_ignored(admin_client):
    html = admin_client.post(ADD, integration_form_data(client_secret="", client_secret_kept="gAAAAA-forged")).content
    assert "This field is required." in html.decode()


def test_opening_the_address_of_a_test_goes_back_to_the_form(admin_client):
    assert admin_client.get(ADD_TEST)["Location"] == ADD
    integration = make_integration()
    edit_test = reverse("defender:integration-edit-test", args=[integration.pk])
    assert admin_client.get(edit_test)["Location"] == reverse("defender:integration-edit", args=[integration.pk])


def test_a_test_that_passed_on_the_form_is_recorded_when_submit_saves_the_same_values(admin_client, simulator):
    assert "The Test passed." in admin_client.post(ADD_TEST, simulator_form_data(simulator)).content.decode()
    admin_client.post(ADD, simulator_form_data(simulator))
    integration = Integration.objects.get()
    assert integration.last_test_ok is True
    assert integration.last_test_summary.startswith("All steps passed")


def test_a_test_on_the_form_is_not_recorded_when_submit_saves_other_values(admin_client, simulator):
    admin_client.post(ADD_TEST, simulator_form_data(simulator))
    admin_client.post(ADD, simulator_form_data(simulator, read_timeout="20"))
    assert Integration.objects.get().last_test_at is None
