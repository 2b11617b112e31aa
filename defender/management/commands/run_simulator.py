"""Run the Defender simulator in the foreground and print what to paste into the Add Integration form."""

import signal
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from defender.simulator import Simulator
from defender.simulator.faults import HOSTILE_VALUES
from defender.simulator.instructions import form_values, start_or_explain


class Command(BaseCommand):
    help = "Serve a simulated Entra ID and Defender for Endpoint, Graph and SIEM alert APIs over HTTPS on 127.0.0.1."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8443, help="Port on 127.0.0.1 (default 8443; 0 picks one).")
        parser.add_argument(
            "--siem-port", type=int, default=8444, help="Port of the SIEM exporter (default 8444; 0 picks one)."
        )
        parser.add_argument("--seed", type=int, default=1, help="Seed of the simulated tenant's data (default 1).")
        parser.add_argument("--alerts", type=int, default=0, help="Alerts on the bulk machine, for benchmarks.")
        parser.add_argument(
            "--fleet",
            type=int,
            default=0,
            metavar="N",
            help="N more alerts over --fleet-machines machines (fleet-NNN.corp.contoso.com), for sweeps.",
        )
        parser.add_argument("--fleet-machines", type=int, default=20, help="Machines of --fleet (default 20).")
        parser.add_argument("--page-size", type=int, default=1000, help="Server page size when no $top is given.")
        parser.add_argument("--ca-path", help="Where to write the CA certificate (default var/simulator-ca.pem).")
        faults = parser.add_argument_group("faults", "failures the real services produce, for the whole run")
        faults.add_argument("--throttle-every", type=int, default=0, help="429 with Retry-After on every Nth call.")
        faults.add_argument("--rate-limit", type=int, default=0, help="429 beyond N calls a minute (real: 100).")
        faults.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on a 429.")
        faults.add_argument("--fail-next", type=int, default=0, help="The first N calls fail with --fail-status.")
        faults.add_argument("--fail-status", type=int, default=503, choices=[500, 502, 503, 504])
        faults.add_argument("--delay", type=float, default=0.0, help="Seconds to wait before each answer.")
        faults.add_argument("--malformed-page", type=int, default=0, help="Send page K of paged answers truncated.")
        faults.add_argument(
            "--missing-next-link", action="store_true", help="Leave out @odata.nextLink when the client sends $top."
        )
        faults.add_argument(
            "--hostile-alerts",
            default="",
            metavar="FIELD=KIND,...;...",
            help="Serve alerts no documented API sends, one ';' part per alert, e.g. 'title=object;id=missing' "
            "(kinds: " + ", ".join(HOSTILE_VALUES) + ").",
        )
        faults.add_argument("--hostile-alerts-on", default="", metavar="MACHINE", help="Only that machine's alerts.")
        faults.add_argument("--faults-apply-to", choices=["api", "token", "all"], default="api")

    def handle(self, *args, **options):
        ca_path = options["ca_path"] or Path(settings.BASE_DIR) / "var" / "simulator-ca.pem"
        simulator = Simulator(
            seed=options["seed"],
            alerts_on_bulk_machine=options["alerts"],
            port=options["port"],
            siem_port=options["siem_port"],
            ca_path=ca_path,
            page_size=options["page_size"],
            throttle_every=options["throttle_every"],
            rate_limit_per_minute=options["rate_limit"],
            retry_after=options["retry_after"],
            fail_next=options["fail_next"],
            fail_status=options["fail_status"],
            delay=options["delay"],
            malformed_page=options["malformed_page"],
            missing_next_link_with_top=options["missing_next_link"],
            hostile_alerts=options["hostile_alerts"],
            hostile_alerts_on=options["hostile_alerts_on"],
            applies_to=options["faults_apply_to"],
        )
        if options["fleet"] < 0 or options["fleet_machines"] < 1:
            raise CommandError("--fleet takes a number of alerts (0 or more), --fleet-machines at least 1.")
        if options["fleet"]:
            names = simulator.seed_fleet(options["fleet"], options["fleet_machines"])
            self.stdout.write(f"Fleet: {options['fleet']:,} alerts on {names[0]} … {names[-1]}")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        start_or_explain(simulator, "--port")
        try:
            self.describe(simulator)
            while not stop.wait(0.5):
                pass
        finally:
            simulator.stop()
        self.stdout.write("Simulator stopped.")

    def describe(self, sim):
        lines = [
            self.style.SUCCESS(
                f"Defender simulator listening on {sim.base_url}, its SIEM exporter on {sim.siem_base_url} "
                f"(seed {sim.seed})"
            ),
            "",
            *form_values(sim),
            "",
            f'Faults: GET/POST/DELETE {sim.base_url}/_simulator/faults  (e.g. POST {{"throttle_every": 3}})',
            "Press Ctrl-C to stop.",
        ]
        self.stdout.write("\n".join(lines))
