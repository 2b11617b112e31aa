"""Sweep integrations for every alert updated since their last sweep, in the foreground: for scripts and first
imports. The same sweep as the schedule's, with its progress and a summary printed."""

from django.core.management.base import BaseCommand, CommandError

from defender.models import Integration
from defender.operations import sync

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Sweep the named integrations (default: every enabled one) for the alerts updated since their last sweep, "
        "and store those of actors. Exit 1 when a sweep failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("integrations", nargs="*", metavar="INTEGRATION", help="an integration's name or id")
        parser.add_argument(
            "--full", action="store_true", help="sweep the whole lookback window again, not only what changed"
        )

    def handle(self, *args, **options):
        keys = options["integrations"]
        if keys:
            chosen, unknown = sync.integrations_named(keys)
            if unknown:
                known = ", ".join(Integration.objects.order_by("name").values_list("name", flat=True)) or "none yet"
                names = ", ".join(repr(key) for key in unknown)
                raise CommandError(f"No integration is named or numbered {names}. Known integrations: {known}.")
        else:
            chosen = sync.sweepable()
            if not chosen:
                raise CommandError("No integration is enabled: there is nothing to sweep.")
        failed = 0
        for integration in chosen:
            summary = sync.sync_integration(integration, full=options["full"], progress=self._progress)
            if summary.pages:
                self.stderr.write("")  # ends the progress line
            if summary.error:
                failed += 1
                self.stdout.write(self.style.ERROR(summary.text()))
            elif summary.skipped:
                self.stdout.write(self.style.WARNING(summary.text()))
            else:
                self.stdout.write(self.style.SUCCESS(summary.text()))
        if failed:
            raise CommandError(f"{failed} of {len(chosen)} sweep{'s' if len(chosen) != 1 else ''} failed.")

    def _progress(self, summary):
        """One line rewritten per page: the total is not known until the last page, so the bar fills by pages of
        10,000 and says what was stored."""
        filled = min(BAR_WIDTH, summary.pages)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stderr.write(
            f"\r{summary.integration} [{bar}] page {summary.pages}, {summary.fetched:,} fetched, "
            f"{summary.stored:,} stored on {summary.actors_touched:,} actors",
            ending="",
        )
        self.stderr.flush()
