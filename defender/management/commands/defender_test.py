"""Run an integration's Test from the command line: the same steps, messages and record as the Test button."""

import json

from django.core.management.base import BaseCommand, CommandError

from defender.models import Integration
from defender.operations.checks import record_test_result, steps_for
from defender.services.steps import FAILED, PASSED, TestResult

MARKS = {PASSED: "✓", FAILED: "✗"}


def integration_named(name):
    """The integration called name, or a CommandError that lists the names there are."""
    try:
        return Integration.objects.select_related("proxy_rule").get(name=name)
    except Integration.DoesNotExist:
        known = ", ".join(Integration.objects.values_list("name", flat=True)) or "none yet"
        raise CommandError(f"No integration is named {name!r}. Known integrations: {known}.") from None


class Command(BaseCommand):
    help = "Run the Test of an integration (DNS, TCP, TLS, token, permissions, API call); exit 1 if a step fails."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the integration's name")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args, **options):
        integration = integration_named(options["name"])
        steps = []
        for step in steps_for(integration.to_settings):
            steps.append(step)
            if not options["json"]:
                self._print_step(step)
        result = TestResult(tuple(steps))
        record_test_result(integration, result)
        if options["json"]:
            payload = {
                "ok": result.ok,
                "steps": [
                    {"name": s.name, "outcome": s.outcome, "duration_ms": s.duration_ms, "message": s.message}
                    for s in steps
                ],
            }
            self.stdout.write(json.dumps(payload, indent=2))
        if not result.ok:
            raise CommandError(result.summary, returncode=1)

    def _print_step(self, step):
        mark = MARKS.get(step.outcome, "-")
        line = f"{mark} {step.name} ({step.duration_ms} ms): {step.message}"
        style = {PASSED: self.style.SUCCESS, FAILED: self.style.ERROR}.get(step.outcome, self.style.WARNING)
        self.stdout.write(style(line))
