"""Model validation: every rule gives a message on its own field."""

import pytest
import trustme
from django.core.exceptions import ValidationError

from defender import presets
from defender.models import Actor, Integration, ProxyRule
from tests.factories import CLIENT_ID, CLIENT_SECRET, TENANT_ID

pytestmark = pytest.mark.django_db


def errors_of(instance):
    with pytest.raises(ValidationError) as excinfo:
        instance.full_clean()
    return excinfo.value.message_dict


def integration(**fields):
    values = {
        "name": "Defender",
        "host": "api.security.microsoft.com",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT_ID,
        "auth_url": "https://login.microsoftonline.com",
    }
    values.update(fields)
    return Integration(**values)


def test_a_valid_integration_passes():
    integration().full_clean()


@pytest.mark.parametrize("client_id", ["not-a-guid", "12345", "0b6f1d2e-0000-4000-8000"])
def test_client_id_must_be_a_guid(client_id):
    assert errors_of(integration(client_id=client_id))["client_id"] == [
        "Enter the application (client) ID as a GUID, e.g. 00000000-0000-0000-0000-000000000000."
    ]


@pytest.mark.parametrize("tenant_id", [TENANT_ID, "contoso.onmicrosoft.com", "corp.contoso.com"])
def test_tenant_id_accepts_a_guid_or_a_domain(tenant_id):
    integration(tenant_id=tenant_id).full_clean()


@pytest.mark.parametrize("tenant_id", ["contoso", "not a tenant", "https://login.microsoftonline.com/x"])
def test_tenant_id_refuses_anything_else(tenant_id):
    assert "GUID or a domain name" in errors_of(integration(tenant_id=tenant_id))["tenant_id"][0]


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("https://api.security.microsoft.com", "without http:// or https://"),
        ("api.security.microsoft.com/api", "without a path"),
        ("api.security.microsoft.com:443", "without a port"),
        ("bad_host!", "host name (letters, digits and hyphens"),
    ],
)
def test_host_must_be_a_bare_hostname(host, message):
    assert message in errors_of(integration(host=host))["host"][0]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "eu.api.security.microsoft.com", "defender-sim"])
def test_host_accepts_names_and_addresses(host):
    integration(host=host).full_clean()


@pytest.mark.parametrize("port", [0, 65536, 70000])
def test_port_must_be_in_range(port):
    assert errors_of(integration(port=port))["port"] == ["Enter a port between 1 and 65535."]


@pytest.mark.parametrize("auth_url", ["http://login.microsoftonline.com", "login.microsoftonline.com", "ftp://x"])
def test_auth_url_must_be_https(auth_url):
    assert "Enter an https:// URL" in errors_of(integration(auth_url=auth_url))["auth_url"][0]


def test_a_pem_that_does_not_parse_is_refused_with_the_parsers_reason():
    broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    message = errors_of(integration(ca_certificate=broken))["ca_certificate"][0]
    assert message.startswith("This is not a valid PEM certificate: ")
    assert len(message) > len("This is not a valid PEM certificate: ")


def test_text_that_is_not_pem_is_refused():
    message = errors_of(integration(ca_certificate="hello"))["ca_certificate"][0]
    assert "-----BEGIN CERTIFICATE-----" in message


def test_a_real_ca_certificate_and_a_bundle_are_accepted():
    pem = trustme.CA().cert_pem.bytes().decode()
    integration(ca_certificate=pem).full_clean()
    integration(ca_certificate=pem + trustme.CA().cert_pem.bytes().decode()).full_clean()


def test_legacy_siem_needs_a_resource():
    errors = errors_of(integration(api_flavour=presets.SIEM, resource=""))
    assert errors["resource"] == ["The legacy SIEM API needs a resource, e.g. https://graph.windows.net."]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("connect_timeout", 0, "Enter a timeout between 0.1 and 300 seconds."),
        ("max_retries", 11, "Enter between 0 and 10 retries."),
        ("page_size", 10001, "Enter a page size between 1 and 10,000 (the API's maximum)."),
        ("clock_skew_seconds", 7200, "Enter a clock-skew tolerance between 0 and 3600 seconds."),
    ],
)
def test_advanced_options_are_bounded(field, value, message):
    assert errors_of(integration(**{field: value}))[field] == [message]


def test_proxy_rule_validates_host_port_and_certificate():
    errors = errors_of(ProxyRule(name="p", host="http://proxy", port=0, ca_certificate="nope"))
    assert set(errors) == {"host", "port", "ca_certificate"}


def test_actor_hostname_must_be_a_hostname():
    errors = errors_of(Actor(name="a", hostname="https://ws-fin-07", alternate_hostname="ws fin"))
    assert set(errors) == {"hostname", "alternate_hostname"}


def test_actor_hostnames_are_stored_as_entered():
    actor = Actor(name="a", hostname="WS-FIN-07", alternate_hostname="ws-fin-07.Corp.Contoso.com")
    actor.full_clean()
    actor.save()
    actor.refresh_from_db()
    assert actor.hostnames() == ["WS-FIN-07", "ws-fin-07.Corp.Contoso.com"]


def test_presets_cover_every_flavour_with_https_auth_urls():
    from defender.validators import validate_host, validate_https_url

    for flavour, _label in presets.API_FLAVOURS:
        assert presets.default_preset(flavour).flavour == flavour
        for preset in presets.presets_for(flavour):
            validate_host(preset.host)
            validate_https_url(preset.auth_url)
    labels = {preset.label for preset in presets.presets_for(presets.MDE) if preset.common}
    assert {"Global", "US", "EU", "UK"} <= labels


@pytest.mark.parametrize("version", ["v1.0", "beta", "", "v2"])
def test_api_version_accepts_version_segments(version):
    integration(api_version=version).full_clean()


@pytest.mark.parametrize("version", ["../machines", "v1.0/alerts?x=", "latest version"])
def test_api_version_refuses_anything_that_is_not_a_version(version):
    assert errors_of(integration(api_version=version))["api_version"] == [
        "Enter an API version such as v1.0 or beta, or leave it blank for the latest."
    ]
