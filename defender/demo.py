"""The demo's seed: a working Defender ATP integration pointing at the simulator, and actors with alerts there."""

from defender import presets
from defender.models import Actor, Integration
from defender.operations import sync

DEMO_INTEGRATION = "Defender ATP (simulator)"
# (name, operating system) for the simulator's first three actor hostnames: a short name whose FQDN Defender knows,
# a kiosk Defender knows only by its alternate hostname, and a server entered by its FQDN.
DEMO_ACTORS = [("Finance workstation", "windows"), ("Lobby kiosk", "windows"), ("Domain controller", "windows")]


def seed_demo(simulator):
    """Create or refresh the demo integration and actors; returns the integration. Safe to run on every start."""
    integration, created = Integration.objects.update_or_create(
        name=DEMO_INTEGRATION,
        defaults={
            "api_flavour": presets.MDE,
            "host": simulator.host,
            "port": simulator.port,
            "protocol": Integration.Protocol.HTTPS,
            "client_id": simulator.app.client_id,
            "client_secret": simulator.app.client_secret,
            "tenant_id": simulator.tenant_id,
            "auth_url": simulator.auth_url,
            "resource": presets.default_preset(presets.MDE).resource,
            "api_version": presets.DEFAULT_API_VERSION[presets.MDE],
            "ca_certificate": simulator.ca_pem,
            "lookback_hours": 24 * 30,
            "enabled": True,
        },
    )
    if created:
        # As a new integration saved in the form: swept every 10 minutes.
        sync.set_schedule(integration, sync.DEFAULT_MINUTES)
    for (name, operating_system), (hostname, alternate) in zip(DEMO_ACTORS, simulator.actor_hostnames(), strict=False):
        Actor.objects.update_or_create(
            name=name,
            defaults={"hostname": hostname, "alternate_hostname": alternate, "operating_system": operating_system},
        )
    return integration
