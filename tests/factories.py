"""Valid model instances for tests, overridable field by field."""

from defender import presets
from defender.models import Actor, Integration, ProxyRule
from tests.fixtures.connection import RESOURCES

TENANT_ID = "72f988bf-0000-4000-8000-00000000aaaa"
CLIENT_ID = "0b6f1d2e-0000-4000-8000-00000000bbbb"
# Obviously fake: never a real-looking secret in a fixture.
CLIENT_SECRET = "test-only-secret-not-real"


def make_integration(**fields):
    values = {
        "name": "Defender EU",
        "host": "eu.api.security.microsoft.com",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "tenant_id": TENANT_ID,
        "auth_url": "https://login.microsoftonline.com",
        "resource": "https://api.securitycenter.microsoft.com",
    }
    values.update(fields)
    integration = Integration(**values)
    integration.full_clean()
    integration.save()
    return integration


def make_proxy_rule(**fields):
    values = {"name": "Corporate proxy", "host": "proxy.corp.example", "port": 3128}
    values.update(fields)
    rule = ProxyRule(**values)
    rule.full_clean()
    rule.save()
    return rule


def make_actor(**fields):
    values = {"name": "Finance workstation", "hostname": "ws-fin-07"}
    values.update(fields)
    actor = Actor(**values)
    actor.full_clean()
    actor.save()
    return actor


def simulator_integration(simulator, **fields):
    """An integration of the simulator's tenant, with its CA trusted; a SIEM one points at the SIEM exporter's
    listener, as a real one points at the exporter's own host."""
    siem = fields.get("api_flavour") == presets.SIEM
    values = {
        "name": "Simulator",
        "host": simulator.siem_host if siem else simulator.host,
        "port": simulator.siem_port if siem else simulator.port,
        "auth_url": simulator.auth_url,
        "tenant_id": simulator.tenant_id,
        "client_id": simulator.app.client_id,
        "client_secret": simulator.app.client_secret,
        "ca_certificate": simulator.ca_pem,
        "api_flavour": presets.MDE,
        "resource": "https://api.securitycenter.microsoft.com",
        "connect_timeout": 2.0,
        "read_timeout": 5.0,
        "max_retries": 0,
    }
    values.update(fields)
    return make_integration(**values)


TYPED_SECRET = "typed-secret-value-1234"


def simulator_form_data(simulator, **overrides):
    """What a person types in Add Integration to reach the simulator."""
    typed = {
        "name": "Simulator",
        "host": simulator.host,
        "port": str(simulator.port),
        "auth_url": simulator.auth_url,
        "tenant_id": simulator.tenant_id,
        "client_id": simulator.app.client_id,
        "client_secret": simulator.app.client_secret,
        "ca_certificate": simulator.ca_pem,
    }
    return integration_form_data(**(typed | overrides))


def integration_form_data(**overrides):
    """What a person submits in Add Integration > Defender ATP, field by field."""
    data = {
        "name": "Defender EU",
        "location": "local",
        "api_flavour": presets.MDE,
        "host": "eu.api.security.microsoft.com",
        "port": "443",
        "protocol": "https",
        "client_id": CLIENT_ID,
        "client_secret": TYPED_SECRET,
        "api_version": "v1.0",
        "auth_url": "https://login.microsoftonline.com",
        "tenant_id": TENANT_ID,
        "resource": "https://api.securitycenter.microsoft.com",
        "proxy_rule": "",
        "enabled": "on",
        "connect_timeout": "5",
        "read_timeout": "30",
        "verify_tls": "on",
        "ca_certificate": "",
        "max_retries": "3",
        "page_size": "1000",
        "lookback_hours": "24",
        "clock_skew_seconds": "300",
        "detection_window_minutes": "60",
        "secret_expires_on": "",
        "notify_after_failures": "3",
    }
    data.update(overrides)
    return data


def three_flavours(simulator):
    """A Defender API, a Graph and a SIEM integration of the simulator's one tenant."""
    return [
        simulator_integration(
            simulator,
            name=name,
            api_flavour=flavour,
            resource=RESOURCES[flavour],
            api_version=presets.DEFAULT_API_VERSION[flavour],
        )
        for name, flavour in (("Defender API", presets.MDE), ("Graph", presets.GRAPH), ("SIEM", presets.SIEM))
    ]
