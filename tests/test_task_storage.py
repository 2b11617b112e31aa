"""What a worker's task stores, on every database the suite runs on (SQLite and PostgreSQL, as in CI): the tasks are
called here as a worker calls them."""

import pytest

from defender.models import TestRun
from defender.operations import checks
from defender.services.steps import PASSED
from tests.factories import simulator_integration


@pytest.mark.django_db
def test_a_test_run_taken_by_a_worker_finishes_and_records_its_outcome(simulator):
    integration = simulator_integration(simulator)
    run = TestRun.objects.create(subject=TestRun.Subject.INTEGRATION, title=integration.name, integration=integration)

    checks.execute_run(run.pk)

    run.refresh_from_db()
    integration.refresh_from_db()
    assert run.finished
    assert {step["outcome"] for step in run.steps} == {PASSED}
    assert integration.last_test_ok is True
