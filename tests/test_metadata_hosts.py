"""A Test never reaches a link-local or cloud metadata address (which hands out the machine's own credentials),
whether it is typed into a form or a name resolves there, unless ALLOW_METADATA_HOSTS says it may."""

import socket

import pytest
from django.core.exceptions import ValidationError

from defender import validators
from defender.models import Integration, ProxyRule
from defender.services import addresses, connectivity
from defender.services.connection import ProxySettings
from defender.services.errors import ConnectionFailed
from tests.factories import integration_form_data, make_actor
from tests.fixtures.connection import settings_for

METADATA_HOSTS = [
    "169.254.169.254",
    "169.254.0.1",
    "2852039166",  # 169.254.169.254 as one number, which the system resolver accepts
    "fe80::1",
    "[fe80::a9fe:a9fe]",
    "::ffff:169.254.169.254",
    "100.100.100.200",
    "fd00:ec2::254",
    "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL.",
    "metadata.azure.com",
]
ORDINARY_HOSTS = ["127.0.0.1", "10.1.2.3", "::1", "eu.api.security.microsoft.com", "metadata.example.com", "fd00::1"]


@pytest.mark.parametrize("host", METADATA_HOSTS)
def test_a_metadata_host_is_refused_saying_why(host):
    with pytest.raises(ValidationError) as refused:
        validators.validate_host(host)
    message = refused.value.messages[0]
    assert message.startswith(f"Refused: {host} is ")
    assert "the machine's own credentials" in message
    assert "ALLOW_METADATA_HOSTS=true" in message


@pytest.mark.parametrize("host", ORDINARY_HOSTS)
def test_ordinary_hosts_are_accepted(host):
    validators.validate_host(host)


def test_the_auth_url_may_not_point_at_a_metadata_host():
    with pytest.raises(ValidationError, match="Refused: 169.254.169.254 is a link-local address"):
        validators.validate_https_url("https://169.254.169.254/latest/meta-data/")
    validators.validate_https_url("https://login.microsoftonline.com")


def test_the_setting_allows_metadata_hosts(settings):
    settings.ALLOW_METADATA_HOSTS = True
    for host in METADATA_HOSTS:
        validators.validate_host(host)
    validators.validate_https_url("https://metadata.google.internal")


@pytest.mark.django_db
def test_an_actor_may_be_called_by_a_link_local_address_because_the_site_never_connects_to_it():
    actor = make_actor(hostname="169.254.10.20")
    assert actor.hostname == "169.254.10.20"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"),
    [("host", "169.254.169.254"), ("auth_url", "https://metadata.google.internal"), ("host", "fd00:ec2::254")],
)
def test_the_integration_form_refuses_a_metadata_host_next_to_its_field(admin_client, field, value):
    response = admin_client.post("/settings/integrations/add/defender_atp/", integration_form_data(**{field: value}))

    assert response.status_code == 200
    [error] = response.context["form"].errors[field]
    assert error.startswith("Refused:") and "ALLOW_METADATA_HOSTS" in error
    assert response.context["form"][field].value() == value  # the input is kept
    assert not Integration.objects.exists()


@pytest.mark.django_db
def test_the_proxy_rule_form_refuses_a_metadata_host(admin_client):
    data = {"name": "Metadata proxy", "proxy_type": "http", "host": "metadata.google.internal", "port": "80"}
    response = admin_client.post("/settings/proxy-rules/add/", data)

    assert response.status_code == 200
    assert response.context["form"].errors["host"][0].startswith("Refused: metadata.google.internal is the name")
    assert not ProxyRule.objects.exists()


# At connect time: the Test's DNS step


@pytest.fixture
def no_connection(monkeypatch):
    """Nothing may be connected to: a refused Test must stop before its TCP step opens a socket."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("the Test tried to connect")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def dns_answers(monkeypatch):
    """A DNS server that answers some names with the addresses given (the machine's own resolver knows none)."""
    answers = {}
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def failed_dns_step(result):
    dns, *rest = result.steps
    assert dns.name == "DNS lookup" and dns.outcome == "failed"
    assert all(step.outcome == "skipped" for step in rest)
    return dns.message


@pytest.mark.parametrize("host", ["169.254.169.254", "fe80::1", "100.100.100.200", "2852039166"])
def test_a_test_of_a_metadata_address_fails_at_dns_before_connecting(simulator, no_connection, host):
    message = failed_dns_step(connectivity.run_test(settings_for(simulator, host=host)))

    assert message.startswith("Refused:") and "ALLOW_METADATA_HOSTS=true" in message
    assert no_connection == []


@pytest.mark.parametrize("address", ["169.254.169.254", "fd00:ec2::254", "fe80::1"])
def test_a_name_that_resolves_to_a_metadata_address_fails_at_dns(simulator, no_connection, dns_answers, address):
    dns_answers["defender.rebound.example"] = address

    message = failed_dns_step(connectivity.run_test(settings_for(simulator, host="defender.rebound.example")))

    assert message.startswith(f"Refused: defender.rebound.example resolves to {address}, ")
    assert "the machine's own credentials" in message
    assert no_connection == []


def test_a_proxy_whose_name_resolves_to_a_metadata_address_is_refused(simulator, no_connection, dns_answers):
    dns_answers["proxy.rebound.example"] = "169.254.169.254"
    proxy = ProxySettings(proxy_type="http", host="proxy.rebound.example", port=3128)

    message = failed_dns_step(connectivity.run_test(settings_for(simulator, proxy=proxy)))

    assert "proxy.rebound.example resolves to 169.254.169.254" in message


def test_a_metadata_host_behind_a_proxy_is_refused_before_the_proxy_is_asked(simulator, no_connection):
    proxy = ProxySettings(proxy_type="http", host="127.0.0.1", port=3128)

    message = failed_dns_step(
        connectivity.run_test(settings_for(simulator, host="metadata.google.internal", proxy=proxy))
    )

    assert message.startswith("Refused: metadata.google.internal is the name of a cloud metadata service")


def test_a_name_that_resolves_to_an_ordinary_address_passes_the_dns_step(simulator, dns_answers):
    dns_answers["defender.lab.example"] = "127.0.0.1"

    result = connectivity.run_test(settings_for(simulator, host="defender.lab.example"))

    assert result.steps[0].outcome == "passed"
    assert result.steps[0].message == "defender.lab.example resolves to 127.0.0.1."


def test_the_setting_lets_the_services_reach_metadata_addresses(settings):
    settings.ALLOW_METADATA_HOSTS = True
    addresses.refuse_metadata("defender.rebound.example", ["169.254.169.254"])
    settings.ALLOW_METADATA_HOSTS = False
    with pytest.raises(ConnectionFailed):
        addresses.refuse_metadata("defender.rebound.example", ["169.254.169.254"])
