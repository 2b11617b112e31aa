"""Recording a Test's outcome on its integration, shared by the Test page and the defender_test command."""

from dataclasses import asdict

from django.utils import timezone


def record_test_result(integration, result):
    """Store when the Test ran, whether it passed, a one-line summary and the steps; the edit timestamps stay as they
    were."""
    integration.last_test_at = timezone.now()
    integration.last_test_ok = result.ok
    integration.last_test_summary = result.summary
    integration.last_test_steps = [asdict(step) for step in result.steps]
    integration.save(update_fields=["last_test_at", "last_test_ok", "last_test_summary", "last_test_steps"])
