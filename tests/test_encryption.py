import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from defender.encryption import DecryptionError
from defender.models import Integration, ProxyRule
from tests.factories import CLIENT_SECRET, make_integration, make_proxy_rule

pytestmark = pytest.mark.django_db


def raw_column(table, column, pk):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_client_secret_round_trips_through_the_database():
    integration = make_integration()
    assert Integration.objects.get(pk=integration.pk).client_secret == CLIENT_SECRET


def test_raw_database_column_holds_ciphertext_not_the_secret():
    integration = make_integration()
    rule = make_proxy_rule(username="svc-proxy", password="proxy-pass-for-test")
    stored_secret = raw_column("defender_integration", "client_secret", integration.pk)
    stored_password = raw_column("defender_proxyrule", "password", rule.pk)
    assert CLIENT_SECRET not in stored_secret
    assert stored_secret.startswith("fernet:v1:")
    assert "proxy-pass-for-test" not in stored_password
    assert ProxyRule.objects.get(pk=rule.pk).password == "proxy-pass-for-test"


def test_saving_without_touching_the_secret_keeps_the_same_ciphertext():
    integration = make_integration()
    before = raw_column("defender_integration", "client_secret", integration.pk)
    loaded = Integration.objects.get(pk=integration.pk)
    loaded.host = "us.api.security.microsoft.com"
    loaded.save()
    assert raw_column("defender_integration", "client_secret", integration.pk) == before


def test_empty_secret_is_stored_empty():
    rule = make_proxy_rule()
    assert raw_column("defender_proxyrule", "password", rule.pk) == ""
    assert ProxyRule.objects.get(pk=rule.pk).password == ""


def test_repr_and_forms_never_carry_the_secret():
    from django.forms.models import model_to_dict

    integration = Integration.objects.get(pk=make_integration().pk)
    assert CLIENT_SECRET not in repr(integration.__dict__)
    assert model_to_dict(integration)["client_secret"] == ""
    assert CLIENT_SECRET not in repr(integration.to_settings())


def test_rotation_with_two_keys_then_old_key_removed(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    integration = make_integration()
    rule = make_proxy_rule(username="svc", password="proxy-pass-for-test")
    new_key = Fernet.generate_key().decode()

    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_key", stdout=io.StringIO())

    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    assert Integration.objects.get(pk=integration.pk).client_secret == CLIENT_SECRET
    assert ProxyRule.objects.get(pk=rule.pk).password == "proxy-pass-for-test"


def test_wrong_key_gives_an_error_naming_the_record(settings):
    integration = make_integration(name="Defender prod")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    loaded = Integration.objects.get(pk=integration.pk)
    with pytest.raises(DecryptionError) as excinfo:
        loaded.client_secret  # noqa: B018 - reading the attribute is what decrypts
    message = str(excinfo.value)
    assert "client_secret" in message and "Defender prod" in message and str(integration.pk) in message
    assert "FIELD_ENCRYPTION_KEYS" in message


def test_rotation_with_a_wrong_key_changes_nothing_and_names_the_record(settings):
    integration = make_integration(name="Defender prod")
    before = raw_column("defender_integration", "client_secret", integration.pk)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="Defender prod"):
        call_command("rotate_encryption_key")
    assert raw_column("defender_integration", "client_secret", integration.pk) == before


def test_listing_integrations_does_not_decrypt(settings, admin_client):
    make_integration(name="Defender prod")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    response = admin_client.get("/settings/integrations/")
    assert response.status_code == 200
    assert b"Defender prod" in response.content


def test_django_admin_never_renders_the_secret(client, django_user_model):
    superuser = django_user_model.objects.create_superuser("root", password="x-for-test-only")
    client.force_login(superuser)
    integration = make_integration()
    rule = make_proxy_rule(username="svc", password="proxy-pass-for-test")
    for url in [
        f"/admin/defender/integration/{integration.pk}/change/",
        f"/admin/defender/proxyrule/{rule.pk}/change/",
        "/admin/defender/integration/",
    ]:
        body = client.get(url).content.decode()
        assert CLIENT_SECRET not in body and "proxy-pass-for-test" not in body
        assert "fernet:v1:" not in body


def test_django_admin_blank_secret_keeps_the_stored_one(client, django_user_model):
    superuser = django_user_model.objects.create_superuser("root", password="x-for-test-only")
    client.force_login(superuser)
    rule = make_proxy_rule(username="svc", password="proxy-pass-for-test")
    response = client.post(
        f"/admin/defender/proxyrule/{rule.pk}/change/",
        {"name": rule.name, "proxy_type": "http", "host": rule.host, "port": 3128, "username": "svc", "password": ""},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ProxyRule.objects.get(pk=rule.pk).password == "proxy-pass-for-test"


def test_a_test_with_a_secret_no_key_opens_fails_its_first_step_naming_the_record(settings, admin_client):
    integration = make_integration(name="Defender prod")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    response = admin_client.post(f"/settings/integrations/{integration.pk}/test/", follow=True)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Stored secret" in body and "Cannot decrypt client_secret of integration" in body and "Defender prod" in body


def test_a_remote_job_whose_secret_no_key_opens_fails_instead_of_reaching_the_node(settings, client):
    import json

    from defender.models import Integration, Job, RemoteNode
    from defender.remote import jobs, tokens

    node = RemoteNode.objects.create(name="dmz-node")
    token = tokens.issue(node)
    integration = make_integration(name="Defender prod", location=Integration.Location.REMOTE, remote_node=node)
    job = jobs.enqueue(integration, Job.Kind.TEST)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    response = client.post(
        "/api/nodes/check-in/",
        json.dumps({"wait": 0}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.json()["job"] is None
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "Defender prod" in job.error


def test_the_django_admin_lists_every_model_and_never_shows_a_node_token(client, django_user_model):
    from django.apps import apps

    from defender.models import RemoteNode
    from defender.remote import tokens

    superuser = django_user_model.objects.create_superuser("root", password="x-for-test-only")
    client.force_login(superuser)
    node = RemoteNode.objects.create(name="dmz-node")
    token = tokens.issue(node)
    for model in apps.get_app_config("defender").get_models():
        url = f"/admin/defender/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
    body = client.get(f"/admin/defender/remotenode/{node.pk}/change/").content.decode()
    assert token not in body and node.token_hash not in body
