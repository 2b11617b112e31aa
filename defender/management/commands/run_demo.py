"""Serve the site with the simulator beside it, seeded with a working integration and three actors, and a background
worker with the scheduler (Celery, on the embedded broker unless CELERY_BROKER_URL says otherwise).

Ctrl-C stops them all.
"""

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from defender.demo import seed_demo, seed_demo_execution
from defender.simulator import Simulator
from defender.simulator.instructions import form_values, start_or_explain


class Command(BaseCommand):
    help = "Start the Defender simulator, seed a demo integration and actors, and serve the site."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="Where the site listens.")
        parser.add_argument("--simulator-port", type=int, default=8443, help="Port of the simulator on 127.0.0.1.")
        parser.add_argument("--siem-port", type=int, default=8444, help="Port of the simulator's SIEM exporter.")
        parser.add_argument("--seed", type=int, default=1, help="Seed of the simulated tenant's data.")
        parser.add_argument(
            "--no-worker", action="store_true", help="Start no background worker (one of your own is running)."
        )

    def handle(self, *args, addrport, simulator_port, siem_port, seed, no_worker, **options):
        ca_path = Path(settings.BASE_DIR) / "var" / "simulator-ca.pem"
        simulator = Simulator(seed=seed, port=simulator_port, siem_port=siem_port, ca_path=ca_path)
        start_or_explain(simulator, "--simulator-port")
        try:
            integration = seed_demo(simulator)
            execution = seed_demo_execution(simulator, integration)
            if execution is not None:
                self.stdout.write(f"Execution '{execution}' on {execution.actor}: open Executions to see its outcomes.")
            self.stdout.write(
                self.style.SUCCESS(f"Simulator on {simulator.base_url}; integration '{integration.name}' points at it.")
            )
            self.stdout.write(f"Open http://{addrport}/ , press Test on '{integration.name}', then open an actor.")
            self.stdout.write("To add a second integration against the simulator, type these values:")
            self.stdout.write("\n".join(form_values(simulator)))
            with contextlib.nullcontext() if no_worker else worker_and_scheduler():
                call_command("runserver", addrport, use_reloader=False)
        finally:
            simulator.stop()


@contextlib.contextmanager
def worker_and_scheduler() -> Iterator[subprocess.Popen[bytes]]:
    """A Celery worker with the scheduler (beat) embedded, as a child process, stopped with the site."""
    command = [sys.executable, "-m", "celery", "-A", "integrations_site", "worker", "--beat"]
    command += ["--concurrency", "2", "--loglevel", "WARNING"]
    worker = subprocess.Popen(command, cwd=settings.BASE_DIR)
    # Stopped by a signal rather than Ctrl-C, the site still stops its worker on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        yield worker
    finally:
        worker.terminate()  # a warm shutdown: the task in hand finishes or goes back to the queue
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
