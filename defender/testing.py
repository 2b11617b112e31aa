"""Recording a Test's outcome on its integration, shared by the Test page and the defender_test command."""

from django.utils import timezone


def record_test_result(integration, result):
    """Store when the Test ran, whether it passed and a one-line summary; the edit timestamps stay as they were."""
    integration.last_test_at = timezone.now()
    integration.last_test_ok = result.ok
    integration.last_test_summary = result.summary
    integration.save(update_fields=["last_test_at", "last_test_ok", "last_test_summary"])
