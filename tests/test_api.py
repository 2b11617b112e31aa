"""The REST API as a runner of procedures uses it: a user's token, what the user's group allows, and each endpoint."""

import json
import logging
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from defender.api import tokens
from defender.models import Alert, ApiToken, Execution
from tests.factories import make_actor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("evaluation_left_to_a_worker")]

LOG_FILE = Path(__file__).parent / "fixtures" / "attire" / "finance-workstation.json"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def api(user):
    """A client that sends the user's new API token (and no session)."""
    _, token = tokens.issue(user, "tests")
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}"), token


@pytest.fixture
def admin_api(admin_user):
    return api(admin_user)[0]


@pytest.fixture
def viewer_api(viewer_user):
    return api(viewer_user)[0]


@pytest.fixture
def actor():
    return make_actor(name="Finance workstation", hostname="ws-fin-07")


def post_json(client, url, body):
    return client.post(url, json.dumps(body), content_type="application/json")


def test_without_a_token_the_api_answers_401_not_a_login_page(client):
    response = client.get("/api/v1/actors/")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer da1_not-a-token", "Bearer", "Token x y"])
def test_a_wrong_token_is_401_and_never_echoed(header):
    response = Client(HTTP_AUTHORIZATION=header).get("/api/v1/actors/")

    assert response.status_code == 401
    assert "not-a-token" not in response.content.decode()


def test_a_revoked_token_opens_nothing(admin_user):
    client, token = api(admin_user)
    assert client.get("/api/v1/actors/").status_code == 200

    tokens.revoke(ApiToken.objects.get())

    assert client.get("/api/v1/actors/").status_code == 401


def test_the_token_is_stored_hashed_and_records_when_it_was_used(admin_user):
    client, token = api(admin_user)
    record = ApiToken.objects.get()
    assert token not in (record.key_hash, record.hint) and record.key_hash == tokens.token_hash(token)
    assert record.last_used_at is None

    client.get("/api/v1/actors/")

    record.refresh_from_db()
    assert record.last_used_at is not None


def test_a_viewer_token_reads_but_cannot_write(viewer_api, actor):
    assert viewer_api.get("/api/v1/actors/").status_code == 200
    response = post_json(viewer_api, "/api/v1/actors/", {"name": "New", "hostname": "ws-new-01"})
    assert response.status_code == 403
    assert post_json(viewer_api, "/api/v1/executions/", json.loads(LOG_FILE.read_text())).status_code == 403


def test_actors_are_listed_created_read_and_changed_with_the_consoles_checks(admin_api, actor):
    listed = admin_api.get("/api/v1/actors/").json()
    assert [a["name"] for a in listed["results"]] == ["Finance workstation"]

    created = post_json(admin_api, "/api/v1/actors/", {"name": "HR laptop", "hostname": "lt-hr-02"})
    assert created.status_code == 201
    pk = created.json()["id"]
    assert admin_api.get(f"/api/v1/actors/{pk}/").json()["hostname"] == "lt-hr-02"

    taken = admin_api.patch(
        f"/api/v1/actors/{pk}/", json.dumps({"alternate_hostname": "ws-fin-07"}), content_type="application/json"
    )
    assert taken.status_code == 400
    assert taken.json() == {"alternate_hostname": ["The actor Finance workstation already has the name ws-fin-07."]}

    changed = admin_api.patch(
        f"/api/v1/actors/{pk}/", json.dumps({"notes": "Second floor"}), content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["notes"] == "Second floor"


def test_alerts_are_listed_with_the_tables_filters_in_a_fixed_number_of_queries(
    admin_api, actor, django_assert_max_num_queries
):
    for number in range(30):
        Alert.objects.create(
            actor=actor, tenant_id="t", alert_id=f"da-{number}", title=f"Alert {number}",
            severity="High" if number % 2 else "Low", created=START + timedelta(minutes=number),
            first_seen_at=START, updated_at=START,
        )  # fmt: skip

    with django_assert_max_num_queries(6):
        page = admin_api.get(f"/api/v1/alerts/?actor={actor.pk}&severity=High").json()

    assert page["count"] == 15 and {a["severity"] for a in page["results"]} == {"High"}
    late = admin_api.get("/api/v1/alerts/?since=2026-11-30T09:25:00Z").json()
    assert late["count"] == 5
    assert admin_api.get("/api/v1/alerts/?actor=99999999999999999999999").status_code == 400


def test_an_attire_log_posted_becomes_an_execution_once(admin_api, actor):
    log = json.loads(LOG_FILE.read_text())

    first = post_json(admin_api, "/api/v1/executions/", log)
    again = post_json(admin_api, "/api/v1/executions/", log)

    assert (first.status_code, again.status_code) == (201, 200)
    body = first.json()
    assert body["execution_id"] == log["execution-data"]["execution-id"]
    assert [(p["technique"], p["outcome"]) for p in body["procedures"]] == [
        ("T1003.001", "pending"),
        ("T1059.001", "pending"),
    ]
    assert Execution.objects.get().source == "api"


def test_a_bad_attire_log_is_400_naming_the_field_and_procedure(admin_api, actor):
    log = json.loads(LOG_FILE.read_text())
    log["procedures"][0]["mitre-technique-id"] = "T99"

    response = post_json(admin_api, "/api/v1/executions/", log)

    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "mitre-technique-id" and body["procedure"].startswith("procedures[0] (T99")
    assert Execution.objects.count() == 0


def test_an_attire_log_for_an_unknown_host_creates_its_actor_only_when_asked(admin_api):
    log = json.loads(LOG_FILE.read_text())

    refused = post_json(admin_api, "/api/v1/executions/", log)
    created = post_json(admin_api, "/api/v1/executions/?create_actors=true&detection_window_minutes=90", log)

    assert refused.status_code == 400 and "WS-FIN-07" in refused.json()["detail"]
    assert created.status_code == 201
    execution = Execution.objects.get()
    assert execution.actor.hostname.lower() == "ws-fin-07" and execution.detection_window_minutes == 90
    first = execution.procedures.order_by("order").first()
    assert first.window_closes_at - first.stopped_at == timedelta(minutes=90)


def test_creating_actors_through_the_api_needs_the_permission_to_add_actors(django_user_model):
    from django.contrib.auth.models import Permission

    runner = django_user_model.objects.create_user("runner", password="unused-in-this-test")
    runner.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_execution", "view_execution"], content_type__app_label="defender")
    )
    client = api(runner)[0]
    log = json.loads(LOG_FILE.read_text())

    denied = post_json(client, "/api/v1/executions/?create_actors=true", log)
    bad_window = post_json(client, "/api/v1/executions/?detection_window_minutes=0", log)

    assert denied.status_code == 403 and "permission to add actors" in denied.json()["detail"]
    assert bad_window.status_code == 400 and bad_window.json()["field"] == "detection_window_minutes"
    assert Execution.objects.count() == 0


def test_a_list_of_procedures_posted_becomes_an_execution(admin_api, actor):
    body = {
        "actor": actor.pk,
        "execution_id": "runner-42",
        "procedures": [{"technique_id": "T1046", "name": "Scan", "command": "nmap -sS 10.0.0.0/24",
                        "started_at": "2026-11-30T09:00:00Z", "stopped_at": "2026-11-30T09:01:00Z"}],
    }  # fmt: skip

    response = post_json(admin_api, "/api/v1/executions/", body)

    assert response.status_code == 201
    execution = admin_api.get(f"/api/v1/executions/{response.json()['id']}/").json()
    assert execution["execution_id"] == "runner-42"
    assert execution["procedures"][0]["technique"] == "T1046"
    listed = admin_api.get(f"/api/v1/executions/?actor={actor.pk}").json()
    assert listed["results"][0]["outcomes"] == {"prevented": 0, "alerted": 0, "detected": 0, "missed": 0, "pending": 1}


def test_a_bad_procedure_list_is_400_naming_where(admin_api, actor):
    body = {"actor": actor.pk, "procedures": [{"technique_id": "T1046", "started_at": "soon"}]}

    response = post_json(admin_api, "/api/v1/executions/", body)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("procedures[0].started_at: ")


def test_coverage_is_the_navigator_layer(admin_api, actor):
    post_json(admin_api, "/api/v1/executions/", json.loads(LOG_FILE.read_text()))

    layer = admin_api.get(f"/api/v1/coverage/?actor={actor.pk}").json()

    assert layer["versions"]["layer"] == "4.5" and layer["domain"] == "enterprise-attack"
    assert {t["techniqueID"] for t in layer["techniques"]} == {"T1003.001", "T1059.001"}
    assert admin_api.get("/api/v1/coverage/?actor=x").status_code == 400


def test_the_schema_and_its_docs_are_served_from_the_site(admin_client):
    schema = admin_client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert {"/api/v1/actors/", "/api/v1/alerts/", "/api/v1/executions/", "/api/v1/coverage/"} <= set(paths)
    docs = admin_client.get("/api/v1/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in docs
    assert "cdn" not in docs.lower()


def test_create_api_token_prints_the_token_once_and_stores_its_hash(admin_user, caplog):
    out = StringIO()
    with caplog.at_level(logging.DEBUG):
        call_command("create_api_token", admin_user.username, "--name", "Runner", stdout=out, stderr=StringIO())

    token = out.getvalue().strip()
    assert token.startswith("da1_")
    record = ApiToken.objects.get()
    assert (record.name, record.key_hash) == ("Runner", tokens.token_hash(token))
    assert token not in caplog.text
    assert Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/actors/").status_code == 200
    with pytest.raises(CommandError, match="No user is named 'nobody'"):
        call_command("create_api_token", "nobody")


def test_the_tokens_page_shows_a_new_token_once_and_revokes_it(viewer_client, viewer_user):
    created = viewer_client.post("/settings/api-tokens/", {"name": "Runner"}, follow=True)
    token = created.context["new_token"]
    assert token in created.content.decode()

    again = viewer_client.get("/settings/api-tokens/").content.decode()
    assert token not in again and token[:10] in again

    record = ApiToken.objects.get(user=viewer_user)
    viewer_client.post(f"/settings/api-tokens/{record.pk}/revoke/")
    record.refresh_from_db()
    assert record.revoked_at is not None
