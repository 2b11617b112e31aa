"""Run an integration's Test from the command line: the same steps, messages and record as the Test button, here or,
for a Remote integration, on its node (the command waits for the node's answer)."""

import json

from django.core.management.base import BaseCommand, CommandError

from defender.models import Integration, TestRun
from defender.operations.checks import RunNotFinished, result_of, start_integration_test, wait_for, wait_seconds
from defender.services.steps import FAILED, PASSED

MARKS = {PASSED: "✓", FAILED: "✗"}


def integration_named(name):
    """The integration called name, or a CommandError that lists the names there are."""
    try:
        return Integration.objects.select_related("proxy_rule", "remote_node").get(name=name)
    except Integration.DoesNotExist:
        known = ", ".join(Integration.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"No integration is named {name!r}. Known integrations: {known}.") from None


class Command(BaseCommand):
    help = (
        "Run the Test of an integration (DNS, TCP, TLS, token, permissions, API call), on its remote node when it is "
        "Remote; exit 1 if a step fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the integration's name")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--timeout",
            type=float,
            help="seconds to wait for a remote node's answer (default: the time the node has to claim the job plus "
            "the Test's own time bound)",
        )

    def handle(self, *args, **options):
        integration = integration_named(options["name"])
        timeout = options["timeout"] if options["timeout"] is not None else wait_seconds(integration)
        run = start_integration_test(integration, trigger=TestRun.Trigger.COMMAND)
        on_step = (lambda step: None) if options["json"] else self._print_step
        try:
            run = wait_for(run, timeout, on_step)
        except RunNotFinished as reason:
            raise CommandError(f"The Test of {integration.name} could not finish: {reason}", returncode=2) from None
        result = result_of(run)
        if options["json"]:
            payload = {
                "ok": result.ok,
                "steps": [
                    {"name": s.name, "outcome": s.outcome, "duration_ms": s.duration_ms, "message": s.message}
                    for s in result.steps
                ],
            }
            self.stdout.write(json.dumps(payload, indent=2))
        if not result.ok:
            raise CommandError(run.summary, returncode=1)

    def _print_step(self, step):
        mark = MARKS.get(step.outcome, "-")
        line = f"{mark} {step.name} ({step.duration_ms} ms): {step.message}"
        style = {PASSED: self.style.SUCCESS, FAILED: self.style.ERROR}.get(step.outcome, self.style.WARNING)
        self.stdout.write(style(line))
