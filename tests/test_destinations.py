"""Recording where a secret may go: sealed when it is typed, never by reading it back, kept across a key rotation and
computed by the migration for the secrets saved before; PEM fields stored in one canonical form."""

import importlib
import io

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from defender import destinations
from defender.certificates import certificate_digests, normalise_pem
from defender.models import Integration, ProxyRule
from defender.services.errors import DefenderError, SecretDestinationChanged
from tests.factories import CLIENT_SECRET, make_integration, make_proxy_rule

pytestmark = pytest.mark.django_db

PROXY_PASSWORD = "proxy-pass-for-test"


@pytest.fixture
def ca_pem():
    import trustme

    return trustme.CA().cert_pem.bytes().decode("ascii")


def loaded(integration):
    return Integration.objects.select_related("proxy_rule").get(pk=integration.pk)


def test_a_secret_set_in_code_and_saved_records_its_destination_without_the_secret():
    integration = make_integration()
    record = loaded(integration).client_secret_destination
    assert record["destination"]["host"] == "eu.api.security.microsoft.com"
    assert record["destination"]["auth_url"] == "https://login.microsoftonline.com"
    assert CLIENT_SECRET not in str(record)
    assert loaded(integration).to_settings().client_secret == CLIENT_SECRET


def test_the_refusal_names_every_part_that_changed_and_is_a_user_safe_error():
    integration = make_integration()
    Integration.objects.filter(pk=integration.pk).update(host="evil.example", port=8443)
    with pytest.raises(SecretDestinationChanged) as refusal:
        loaded(integration).to_settings()
    assert isinstance(refusal.value, DefenderError)
    message = str(refusal.value)
    assert "Host and Port changed" in message and "Type it again on the integration's Edit page" in message
    assert CLIENT_SECRET not in message and CLIENT_SECRET not in repr(refusal.value)


def test_reading_validating_or_reloading_a_saved_secret_does_not_count_as_typing_it():
    """Otherwise full_clean() or refresh_from_db() followed by a save would seal the secret for a new destination."""
    integration = loaded(make_integration())
    integration.full_clean()
    integration.refresh_from_db()
    integration.client_secret = integration.client_secret  # noqa: PLW0127 - what a careless script might do
    integration.host = "evil.example"
    integration.save()
    with pytest.raises(SecretDestinationChanged, match="Host changed"):
        loaded(integration).to_settings()


def test_typing_the_secret_again_seals_it_for_the_new_destination():
    integration = loaded(make_integration())
    integration.host = "us.api.security.microsoft.com"
    integration.client_secret = CLIENT_SECRET
    integration.save()
    assert loaded(integration).to_settings().host == "us.api.security.microsoft.com"


def test_a_test_on_the_form_uses_a_typed_secret_where_the_form_points():
    integration = loaded(make_integration())
    integration.host = "us.api.security.microsoft.com"
    integration.client_secret = "typed-now-on-the-form"
    assert integration.to_settings().client_secret == "typed-now-on-the-form"  # not saved: typed for this


def test_rotating_the_encryption_key_keeps_every_secret_sendable(settings):
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    rule = make_proxy_rule(username="svc", password=PROXY_PASSWORD)
    integration = make_integration(proxy_rule=rule)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_key", stdout=io.StringIO())
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    sent = loaded(integration).to_settings()
    assert sent.client_secret == CLIENT_SECRET and sent.proxy.password == PROXY_PASSWORD


def test_a_rotation_does_not_revive_a_record_that_did_not_verify(settings):
    integration = make_integration()
    Integration.objects.filter(pk=integration.pk).update(host="evil.example")
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.FIELD_ENCRYPTION_KEYS]
    call_command("rotate_encryption_key", stdout=io.StringIO())
    with pytest.raises(SecretDestinationChanged, match="Host changed"):
        loaded(integration).to_settings()


def test_a_secret_saved_without_a_record_is_refused_until_typed_again():
    integration = make_integration()
    Integration.objects.filter(pk=integration.pk).update(client_secret_destination={})
    with pytest.raises(SecretDestinationChanged, match="not recorded"):
        loaded(integration).to_settings()


def migration():
    return importlib.import_module("defender.migrations.0009_secret_destinations")


def test_the_migration_records_the_current_destination_of_every_saved_secret(settings):
    rule = make_proxy_rule(username="svc", password=PROXY_PASSWORD)
    integration = make_integration(proxy_rule=rule)
    unreadable = make_integration(name="Old key", host="us.api.security.microsoft.com")
    Integration.objects.update(client_secret_destination={})
    ProxyRule.objects.update(password_destination={})
    keys = settings.FIELD_ENCRYPTION_KEYS
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    Integration.objects.filter(pk=unreadable.pk).update(client_secret="a secret for a key now gone")
    settings.FIELD_ENCRYPTION_KEYS = keys

    migration().record_destinations(apps, None)

    sent = loaded(integration).to_settings()
    assert sent.client_secret == CLIENT_SECRET and sent.proxy.password == PROXY_PASSWORD
    assert loaded(unreadable).client_secret_destination == {}  # refused (and its key error shown) until retyped


@pytest.mark.django_db(transaction=True)
def test_migrating_a_database_of_the_previous_version_keeps_its_secrets_sendable(ca_pem):
    executor = MigrationExecutor(connection)
    before = [("defender", "0007_api_version_validator")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("defender", "Integration")
    old.objects.create(
        name="Saved before",
        host="eu.api.security.microsoft.com",
        client_id="0b6f1d2e-0000-4000-8000-00000000bbbb",
        client_secret=CLIENT_SECRET,
        tenant_id="72f988bf-0000-4000-8000-00000000aaaa",
        ca_certificate=ca_pem.replace("\n", "\r\n"),
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    integration = Integration.objects.get(name="Saved before")
    assert "\r" not in integration.ca_certificate and integration.ca_certificate == normalise_pem(ca_pem)
    assert integration.to_settings().client_secret == CLIENT_SECRET


def test_pem_fields_are_stored_canonical_however_they_were_pasted(ca_pem):
    pasted = "subject=CN=Example\r\n" + ca_pem.replace("\n", "\r\n") + "\r\n\r\n"
    integration = make_integration(ca_certificate=pasted)
    rule = make_proxy_rule(ca_certificate=pasted)
    assert (
        loaded(integration).ca_certificate == normalise_pem(ca_pem) == ProxyRule.objects.get(pk=rule.pk).ca_certificate
    )
    assert "\r" not in normalise_pem(pasted) and normalise_pem(pasted).endswith("-----END CERTIFICATE-----\n")
    assert certificate_digests(pasted) == certificate_digests(ca_pem) != certificate_digests("")


def test_the_same_certificates_in_another_order_are_the_same_trust(ca_pem):
    import trustme

    other = trustme.CA().cert_pem.bytes().decode("ascii")
    assert certificate_digests(ca_pem + other) == certificate_digests(other + "\r\n" + ca_pem)
    assert (
        destinations.changed_parts(
            {"ca_certificate": certificate_digests(ca_pem + other)},
            {"ca_certificate": certificate_digests(other + ca_pem)},
            {"ca_certificate": "CA certificate"},
        )
        == []
    )
