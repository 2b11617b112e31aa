"""Running a Test from stored settings and recording its outcome, shared by the Test pages and defender_test."""

from dataclasses import asdict

from django.utils import timezone

from defender.destinations import REFUSED_SECRETS
from defender.services.connectivity import iter_test_steps
from defender.services.steps import FAILED, Step


def steps_for(build_settings, run=iter_test_steps):
    """The Test's steps (``run`` of the settings ``build_settings()`` makes); a stored secret that cannot be sent is a
    failed first step saying why, not an error page, and nothing is sent anywhere."""
    try:
        settings = build_settings()
    except REFUSED_SECRETS as error:
        return iter([Step("Stored secret", FAILED, 0, str(error))])
    return run(settings)


def record_test_result(integration, result):
    """Store when the Test ran, whether it passed, a one-line summary and the steps; the edit timestamps stay as they
    were."""
    integration.last_test_at = timezone.now()
    integration.last_test_ok = result.ok
    integration.last_test_summary = result.summary
    integration.last_test_steps = [asdict(step) for step in result.steps]
    integration.save(update_fields=["last_test_at", "last_test_ok", "last_test_summary", "last_test_steps"])
