"""Import ATTiRe execution logs (Invoke-AtomicRedTeam's Attire-ExecutionLogger) from files: for scripts that run
atomics and hand their logs to the site. Each file is imported on its own; one bad file stops none of the others."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from defender.models import Execution
from defender.operations.executions import ExecutionRejected, import_attire
from defender.services.attire import MOST_BYTES


class Command(BaseCommand):
    help = "Import ATTiRe 1.1 execution logs as executions of the actor each names. Exit 1 when a file failed."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE", help="an ATTiRe JSON log")
        parser.add_argument(
            "--detection-window",
            type=int,
            metavar="MINUTES",
            help="how long after each procedure Defender may take to report it (default: each integration's)",
        )
        parser.add_argument(
            "--create-actors", action="store_true", help="add an actor for a target host no actor is yet"
        )

    def handle(self, *args, **options):
        failed = 0
        for name in options["files"]:
            path = Path(name)
            try:
                if path.stat().st_size > MOST_BYTES:
                    raise ExecutionRejected(
                        f"{path.stat().st_size // 1024 // 1024} MB is more than an ATTiRe log's 5 MB."
                    )
                data = path.read_bytes()
                result = import_attire(
                    data,
                    source=Execution.Source.ATTIRE,
                    detection_window_minutes=options["detection_window"],
                    create_actors=options["create_actors"],
                )
            except OSError as exc:
                failed += 1
                self.stdout.write(self.style.ERROR(f"{name}: cannot read it ({exc.strerror})."))
                continue
            except ExecutionRejected as exc:
                failed += 1
                self.stdout.write(self.style.ERROR(f"{name}: {exc}"))
                continue
            style = self.style.SUCCESS if result.created else self.style.WARNING
            self.stdout.write(style(f"{name}: {result.summary}"))
        if failed:
            total = len(options["files"])
            raise CommandError(f"{failed} of {total} file{'s' if total != 1 else ''} could not be imported.")
