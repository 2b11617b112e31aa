"""Schemathesis against the live API, from the API's own OpenAPI schema: for every operation, whatever it generates
no answer is a server error and every documented answer matches the schema.

The operations are run one after another inside one test, each with Hypothesis driving schemathesis's strategy,
rather than through schemathesis's pytest plugin, which does not run under this project's pytest release."""

import pytest
import schemathesis
from django.contrib.auth.models import Group
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from defender.api import tokens
from defender.roles import ADMINISTRATORS
from tests.factories import make_actor

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def token(transactional_db, django_user_model, settings):
    # A posted execution queues its evaluation; the worker is not what this test looks at.
    settings.TASKS_RUN_INLINE = False
    user = django_user_model.objects.create_user("api-runner", password="unused-in-this-test")
    user.groups.add(Group.objects.get(name=ADMINISTRATORS))
    make_actor(name="Finance workstation", hostname="ws-fin-07")
    return tokens.issue(user, "schemathesis")[1]


def test_the_api_answers_every_generated_request_within_its_schema(live_server, token):
    schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9  # actors (5), alerts (2), executions (3), coverage

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def answers_within_schema(case):
            case.call_and_validate(
                base_url=live_server.url,
                headers={"Authorization": f"Bearer {token}"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        answers_within_schema()
