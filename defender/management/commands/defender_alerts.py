"""The alerts Defender raised on an actor, from the command line: a table, JSON or CSV.

It asks like the Get alerts button (here, or through the integration's remote node, waiting for its answer) and stores
what came back for the actor the same way; a bare hostname that names no actor is only asked.
"""

import csv
import json
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from defender.management.commands.defender_test import integration_named
from defender.models import Actor
from defender.operations.alerts import NotAnswered, get_alerts_waiting
from defender.services.alerts import Window, alert_to_fields, describe_window

# Long enough for a node that checks in every few seconds to page through thousands of alerts.
DEFAULT_TIMEOUT_SECONDS = 120

COLUMNS = ("id", "title", "severity", "status", "created", "machine", "mitre_techniques")


def alert_row(alert):
    """Every field kept of an alert, as JSON-ready values: its evidence, its times in ISO 8601 and the raw alert as
    received (bounded), with "machine" for the table's column."""
    return {**alert_to_fields(alert), "machine": alert.machine_name}


def parse_moment(value, option):
    """An ISO 8601 date or datetime; naive values are UTC, like the API's."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{option} {value!r} is not an ISO 8601 date or time; use e.g. 2024-05-01 or 2024-05-01T13:00:00Z."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Command(BaseCommand):
    help = "List the Defender alerts of an actor (by actor name or hostname) in a time window."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the integration's name")
        parser.add_argument("--actor", required=True, help="an actor's name, or a hostname")
        parser.add_argument("--since", help="start of the window, ISO 8601 (default: the integration's lookback)")
        parser.add_argument("--until", help="end of the window, ISO 8601 (default: now)")
        output = parser.add_mutually_exclusive_group()
        output.add_argument("--json", action="store_true", help="print a JSON list")
        output.add_argument("--csv", action="store_true", help="print CSV")
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_SECONDS,
            metavar="SECONDS",
            help=f"for a Remote integration, how long to wait for its node (default: {DEFAULT_TIMEOUT_SECONDS})",
        )

    def handle(self, *args, **options):
        integration = integration_named(options["name"])
        since = parse_moment(options["since"], "--since")
        until = parse_moment(options["until"], "--until")
        if since and until and since > until:
            raise CommandError("--since is after --until.")
        if options["timeout"] <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        actor = Actor.objects.filter(name__iexact=options["actor"]).first()
        hostnames = actor.hostnames() if actor else [options["actor"]]
        try:
            outcome = get_alerts_waiting(integration, hostnames, since, until, actor=actor, timeout=options["timeout"])
        except NotAnswered as exc:
            hint = " Wait longer with --timeout SECONDS." if exc.timed_out else ""
            raise CommandError(f"{exc}{hint}") from None
        if not outcome.ok:
            raise CommandError(outcome.message)
        rows = [alert_row(alert) for alert in outcome.alerts]
        skew = timedelta(seconds=integration.clock_skew_seconds)
        window = describe_window(Window(outcome.since - skew, outcome.until + skew), integration.clock_skew_seconds)
        summary = f"{outcome.message} Window asked: {window}."
        if actor is None:
            self.stderr.write(
                f"Not stored: no actor is named {options['actor']!r}; add it on the Actors page to keep them."
            )
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
        elif options["csv"]:
            writer = csv.DictWriter(self.stdout, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "mitre_techniques": " ".join(row["mitre_techniques"])})
        else:
            self._print_table(rows)
        if options["json"] or options["csv"]:
            self.stderr.write(summary)
        else:
            self.stdout.write(summary)

    def _print_table(self, rows):
        if not rows:
            return
        headings = ("created", "severity", "status", "machine", "title", "mitre_techniques", "id")
        cells = [
            [str(row[column] or "") if column != "mitre_techniques" else " ".join(row[column]) for column in headings]
            for row in rows
        ]
        widths = [max(len(heading), *(len(line[i]) for line in cells)) for i, heading in enumerate(headings)]
        self.stdout.write("  ".join(heading.ljust(width) for heading, width in zip(headings, widths, strict=True)))
        for line in cells:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
