"""Evaluate executions' procedures now, in the foreground, and print each one's outcome and why."""

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Prefetch, prefetch_related_objects

from defender.models import Execution, ProcedureMatch
from defender.operations import outcomes


class Command(BaseCommand):
    help = "Evaluate the named executions (by execution ID or number; default: every one with a Pending procedure)."

    def add_arguments(self, parser):
        parser.add_argument("executions", nargs="*", metavar="EXECUTION_ID")

    def handle(self, *args, **options):
        keys = options["executions"]
        if keys:
            chosen = []
            for key in keys:
                found = Execution.objects.filter(external_id=key).first()
                if found is None and key.isdigit():
                    found = Execution.objects.filter(pk=int(key)).first()
                if found is None:
                    raise CommandError(f"No execution has the ID {key!r}.")
                chosen.append(found)
        else:
            chosen = list(Execution.objects.filter(procedures__evaluated_outcome="pending").distinct())
            if not chosen:
                self.stdout.write("No execution has a Pending procedure.")
                return
        for execution in chosen:
            self.stdout.write(f"{execution} on {execution.actor}:")
            procedures = outcomes.evaluate_execution(execution)
            # One query for every procedure's matches and their alerts, not one per procedure.
            prefetch_related_objects(
                procedures, Prefetch("matches", queryset=ProcedureMatch.objects.select_related("alert").order_by("pk"))
            )
            for procedure in procedures:
                outcome = procedure.get_outcome_display()
                self.stdout.write(f"  {procedure.order:>3} {procedure.technique_id:<10} {outcome:<9} {procedure.name}")
                for match in procedure.matches.all():
                    self.stdout.write(f"        alert {match.alert.alert_id}: {match.reason}")
                if procedure.outcome_note:
                    self.stdout.write(f"        {procedure.outcome_note}")
