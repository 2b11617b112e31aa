"""What a person needs to point an integration at a running simulator, printed by run_simulator and run_demo."""

from django.core.management.base import CommandError

from .server import Simulator


def start_or_explain(simulator: Simulator, option: str, siem_option: str = "--siem-port") -> Simulator:
    """Start the simulator, or say which ports it needs and which options pick others (instead of a traceback)."""
    try:
        return simulator.start()
    except OSError as exc:
        raise CommandError(
            f"The simulator cannot listen on {simulator.host}:{simulator.port} or, for the SIEM exporter, "
            f"{simulator.siem_host}:{simulator.siem_port} ({exc.strerror}): stop what uses it, or pass {option} "
            f"(or {siem_option})."
        ) from None


def form_values(sim: Simulator) -> list[str]:
    """The values to type into Add Integration > Defender ATP, and the simulator's other test credentials.

    The secrets printed here are the simulator's own, generated for this run; they open nothing but the simulator.
    """
    app = sim.app
    lines = [
        "Add Integration form:",
        f"  Host:           {sim.host}",
        f"  Port:           {sim.port}",
        "  Protocol:       https",
        f"  Auth URL:       {sim.auth_url}",
        f"  Tenant ID:      {sim.tenant_id}  (or {sim.tenant_domain})",
        f"  Client ID:      {app.client_id}",
        f"  Client Secret:  {app.client_secret}  (simulated; its secret ID is {app.secret_id})",
        f"  or Certificate: upload {sim.certificate_path}  (the app's simulated key and certificate)",
        f"  CA certificate: paste the contents of {sim.ca_path}",
        f"                  {sim.ca_pem.splitlines()[0]}",
        "",
        "Legacy SIEM API integration: the exporter has a host of its own; the same values, except",
        f"  Host:           {sim.siem_host}",
        f"  Port:           {sim.siem_port}",
        "",
        "Other credentials:",
    ]
    for label, credential in [
        ("without Machine.Read.All", sim.app_without_machine_role),
        ("without any role", sim.app_without_roles),
        ("with an expired secret", sim.app_expired_secret),
    ]:
        lines.append(f"  {label + ':':26}{credential.client_id} / {credential.client_secret}")
    lines += ["", "Actor hostnames with alerts:"]
    for hostname, alternate in sim.actor_hostnames():
        note = f"  (needs alternate hostname {alternate})" if alternate else ""
        lines.append(f"  {hostname}{note}")
    return lines
