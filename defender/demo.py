"""The demo's seed: a working Defender ATP integration pointing at the simulator, and actors with alerts there."""

from datetime import timedelta

from django.utils import timezone

from defender import presets
from defender.models import Actor, Execution, Integration
from defender.operations import outcomes, sync
from defender.operations.executions import record_procedures
from defender.services.alerts import same_host

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


# The demo's execution: procedures run on the Finance workstation two hours before the demo starts, to which the
# simulator's Defender responded in each of the ways the engine tells apart: prevented, alerted on, recorded only
# (found by advanced hunting), and missed.
DEMO_EXECUTION_ID = "demo-finance-workstation"
DEMO_PROCEDURES = [
    ("T1003.001", "Dump LSASS memory with comsvcs.dll",
     r"rundll32.exe C:\Windows\System32\comsvcs.dll, MiniDump 672 C:\Users\Public\lsass.dmp full", "prevented"),
    ("T1059.001", "Encoded PowerShell download cradle",
     "powershell.exe -NoProfile -EncodedCommand SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAKQA=", "alerted"),
    ("T1016", "System network configuration discovery", r"cmd.exe /c ipconfig /all > C:\Users\Public\net.txt",
     "detected"),
    ("T1046", "Network service discovery", "nmap -sS -p 445,3389 10.20.30.0/24", "missed"),
]  # fmt: skip


def seed_demo_execution(simulator, integration) -> Execution | None:
    """Tell the simulator what ran on the Finance workstation and, once, record the execution; then sweep and
    evaluate it, so that a new user sees its outcomes at once. Runs with the demo only: it changes the simulator."""
    actor = Actor.objects.filter(name=DEMO_ACTORS[0][0]).first()
    if actor is None:
        return None
    machine = next(
        m["computerDnsName"] for m in simulator.data.machines if same_host(actor.hostname, m["computerDnsName"])
    )
    execution = Execution.objects.filter(external_id=DEMO_EXECUTION_ID).first()
    first = (
        execution.procedures.order_by("started_at").values_list("started_at", flat=True).first() if execution else None
    )
    ran_at = first or timezone.now().replace(microsecond=0) - timedelta(hours=2)
    rows = []
    told = getattr(simulator, "demo_procedures_told", False)
    for index, (technique, name, command, response) in enumerate(DEMO_PROCEDURES):
        start = ran_at + timedelta(minutes=3 * index)
        if not told:
            simulator.procedure_ran(machine, technique, command, start, start + timedelta(seconds=20), response)
        rows.append({"technique_id": technique, "name": name, "command": command, "order": index + 1,
                     "started_at": start, "stopped_at": start + timedelta(seconds=20)})  # fmt: skip
    simulator.demo_procedures_told = True
    if execution is None:
        execution = record_procedures(
            actor=actor, procedures=rows, source=Execution.Source.API, external_id=DEMO_EXECUTION_ID
        ).execution
    sync.sync_integration(integration)
    outcomes.evaluate_execution(execution)
    return execution
