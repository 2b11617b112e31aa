"""The Executions pages, Coverage and their exports, as a security engineer reads them."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from defender.forms.executions import CoverageForm
from defender.models import Alert, Execution, Procedure, ProcedureMatch
from defender.operations.coverage import coverage, navigator_layer
from defender.operations.executions import record_procedures
from tests.factories import make_actor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("evaluation_left_to_a_worker")]

LOG_FILE = Path(__file__).parent / "fixtures" / "attire" / "finance-workstation.json"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
# The ATT&CK Navigator's layer format 4.5, as a JSON Schema: what an exported layer must satisfy to open there.
LAYER_FORMAT = jsonschema.Draft202012Validator(
    json.loads((Path(__file__).parent / "schemas" / "navigator_layer_4_5.json").read_text())
)


@pytest.fixture
def actor():
    return make_actor(name="Finance workstation", hostname="ws-fin-07")


def executed(actor, outcomes, external_id="", command="whoami /all"):
    """An execution whose procedures came out as given: [(technique, outcome), ...]."""
    procedures = [
        {"technique_id": technique, "name": f"Procedure {index}", "command": command, "order": index,
         "started_at": START + timedelta(minutes=index), "stopped_at": START + timedelta(minutes=index, seconds=10)}
        for index, (technique, _) in enumerate(outcomes, start=1)
    ]  # fmt: skip
    execution = record_procedures(
        actor=actor, procedures=procedures, source=Execution.Source.API, external_id=external_id
    ).execution
    for procedure, (_, outcome) in zip(execution.procedures.order_by("order"), outcomes, strict=True):
        procedure.set_evaluated(outcome)
        procedure.save()
    return execution


def test_the_list_counts_each_executions_procedures_by_outcome(admin_client, actor):
    executed(actor, [("T1003.001", "prevented"), ("T1059.001", "alerted"), ("T1046", "missed")], "run-1")

    page = admin_client.get(reverse("defender:execution-list")).content.decode()

    assert "run-1" in page and "Finance workstation" in page
    assert ">Prevented 1<" in page and ">Alerted 1<" in page and ">Missed 1<" in page


def test_the_list_filters_by_outcome_technique_and_actor(admin_client, actor):
    other = make_actor(name="HR laptop", hostname="lt-hr-02")
    executed(actor, [("T1003.001", "prevented")], "lsass-run")
    executed(other, [("T1046", "missed")], "scan-run")
    url = reverse("defender:execution-list")

    assert "scan-run" not in admin_client.get(url + "?outcome=prevented").content.decode()
    by_parent = admin_client.get(url + "?technique=t1003").content.decode()
    assert "lsass-run" in by_parent and "scan-run" not in by_parent
    by_actor = admin_client.get(url + f"?actor={other.pk}").content.decode()
    assert "scan-run" in by_actor and "lsass-run" not in by_actor


def test_the_list_takes_the_same_queries_for_one_execution_or_thirty(
    admin_client, actor, django_assert_max_num_queries
):
    executed(actor, [("T1003.001", "prevented")], "first")
    url = reverse("defender:execution-list")
    admin_client.get(url)
    with django_assert_max_num_queries(20) as few:
        admin_client.get(url)
    for number in range(30):
        executed(actor, [("T1046", "missed"), ("T1082", "alerted")], f"run-{number}")
    with django_assert_max_num_queries(len(few)):
        admin_client.get(url)


def test_the_execution_page_shows_each_procedure_its_outcome_its_matches_and_why(admin_client, actor):
    execution = executed(actor, [("T1003.001", "prevented"), ("T1046", "missed")], command="<script>x</script>")
    lsass = execution.procedures.get(technique_id="T1003.001")
    alert = Alert.objects.create(
        actor=actor, tenant_id="t", alert_id="da-lsass-1", title="Suspicious access to LSASS",
        first_seen_at=START, updated_at=START,
    )  # fmt: skip
    ProcedureMatch.objects.create(
        procedure=lsass, alert=alert, rules=["technique"], reason="technique T1003.001 is among the alert's",
        prevented=True,
    )  # fmt: skip

    page = admin_client.get(execution.get_absolute_url()).content.decode()

    assert 'href="https://attack.mitre.org/techniques/T1003/001/"' in page
    assert ">Prevented<" in page and ">Missed<" in page
    assert "Suspicious access to LSASS" in page and "technique T1003.001 is among the alert&#x27;s" in page
    assert reverse("defender:actor-alert", args=[actor.pk, alert.pk]) in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script>x</script>" not in page
    assert "Override the outcome" in page


def test_an_administrator_overrides_an_outcome_with_a_reason_and_the_page_says_so(admin_client, admin_user, actor):
    execution = executed(actor, [("T1046", "missed")])
    scan = execution.procedures.get()
    url = reverse("defender:procedure-override", args=[execution.pk, scan.pk])

    refused = admin_client.post(url, {"outcome": "detected", "reason": " "}, follow=True)
    assert "Say why the outcome is overridden" in refused.content.decode()
    scan.refresh_from_db()
    assert scan.outcome == "missed"

    page = admin_client.post(url, {"outcome": "detected", "reason": "Seen in the firewall log"}, follow=True)
    text = page.content.decode()
    assert "is now Detected (overridden)" in text
    assert "Seen in the firewall log" in text and "the engine says Missed" in text
    scan.refresh_from_db()
    assert (scan.outcome, scan.evaluated_outcome, scan.override_by) == ("detected", "missed", admin_user)

    admin_client.post(url, {"outcome": "", "reason": ""})
    scan.refresh_from_db()
    assert (scan.outcome, scan.override_outcome, scan.override_by) == ("missed", "", None)


def test_a_viewer_reads_executions_but_cannot_override_or_import(viewer_client, actor):
    execution = executed(actor, [("T1046", "missed")])
    scan = execution.procedures.get()

    page = viewer_client.get(execution.get_absolute_url())
    assert page.status_code == 200 and "Override the outcome" not in page.content.decode()
    override = reverse("defender:procedure-override", args=[execution.pk, scan.pk])
    assert viewer_client.post(override, {"outcome": "detected", "reason": "x"}).status_code == 403
    assert viewer_client.get(reverse("defender:execution-import")).status_code == 403


def test_uploading_a_log_imports_it_and_opens_the_execution(admin_client, actor):
    upload = SimpleUploadedFile("run.json", LOG_FILE.read_bytes(), content_type="application/json")

    page = admin_client.post(reverse("defender:execution-import"), {"log": upload}, follow=True)

    execution = Execution.objects.get()
    assert page.redirect_chain[-1][0] == execution.get_absolute_url()
    assert "Imported execution" in page.content.decode()
    assert execution.procedures.count() == 2


def test_creating_the_actor_on_upload_needs_the_permission_to_add_actors(client, django_user_model):
    from django.contrib.auth.models import Permission

    runner = django_user_model.objects.create_user("runner", password="unused-in-this-test")
    runner.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_execution", "view_execution"], content_type__app_label="defender")
    )
    client.force_login(runner)
    upload = SimpleUploadedFile("run.json", LOG_FILE.read_bytes(), content_type="application/json")

    page = client.post(reverse("defender:execution-import"), {"log": upload, "create_actors": "on"})

    assert page.status_code == 200
    assert "needs the permission to add actors" in page.context["form"].errors["create_actors"][0]
    assert Execution.objects.count() == 0


def test_a_bad_log_is_refused_next_to_the_file_field_and_the_other_inputs_are_kept(admin_client, actor):
    upload = SimpleUploadedFile("run.json", b'{"attire-version": "1.1", "procedures": []}')

    page = admin_client.post(
        reverse("defender:execution-import"), {"log": upload, "detection_window_minutes": "45", "create_actors": "on"}
    )

    assert page.status_code == 200
    form = page.context["form"]
    assert "execution-data must be an object" in form.errors["log"][0]
    text = page.content.decode()
    assert 'value="45"' in text and "checked" in text
    assert Execution.objects.count() == 0


def test_a_procedure_recorded_by_hand_is_a_manual_execution(admin_client, actor):
    page = admin_client.post(
        reverse("defender:procedure-record"),
        {"actor": actor.pk, "technique_id": "T1059.001", "name": "Encoded PowerShell",
         "started_at": "2026-11-30T09:00", "stopped_at": "2026-11-30T09:01", "command": "powershell -enc AAAA"},
        follow=True,
    )  # fmt: skip

    assert "Recorded T1059.001 on Finance workstation" in page.content.decode()
    assert Execution.objects.get().source == "manual"


def test_a_recorded_procedure_with_a_bad_technique_or_times_keeps_what_was_typed(admin_client, actor):
    page = admin_client.post(
        reverse("defender:procedure-record"),
        {"actor": actor.pk, "technique_id": "1059", "started_at": "2026-11-30T09:05",
         "stopped_at": "2026-11-30T09:01", "command": "powershell -enc AAAA"},
    )  # fmt: skip

    errors = page.context["form"].errors
    assert "Enter a MITRE ATT&CK technique ID" in errors["technique_id"][0]
    assert "stopped before it started" in errors["stopped_at"][0]
    assert "powershell -enc AAAA" in page.content.decode()


def test_the_actor_page_lists_its_latest_executions(admin_client, actor):
    executed(actor, [("T1046", "missed")], "scan-run")

    page = admin_client.get(reverse("defender:actor-detail", args=[actor.pk])).content.decode()

    assert "scan-run" in page and ">Missed 1<" in page


def test_the_procedures_csv_has_each_outcome_and_neutralises_formulas(admin_client, actor):
    executed(actor, [("T1046", "missed")], '=HYPERLINK("x")', command="=cmd|' /C calc'!A0")

    response = admin_client.get(reverse("defender:procedures-csv"))

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["Execution", "Actor", "Order", "Technique"]
    assert rows[1][0] == '\'=HYPERLINK("x")' and rows[1][7] == "Missed" and rows[1][-1].startswith("'=cmd")


def test_coverage_takes_the_best_outcome_per_technique_grouped_by_tactic(admin_client, actor):
    executed(actor, [("T1003.001", "missed"), ("T1003.001", "alerted"), ("T1046", "missed")], "run-a")
    executed(actor, [("T1003.001", "prevented")], "run-b")

    cov = coverage()
    lsass = next(entry for entry in cov.techniques if entry.technique_id == "T1003.001")
    assert lsass.best == "prevented"
    assert lsass.counts == {"missed": 1, "alerted": 1, "prevented": 1}
    assert lsass.name == "LSASS Memory" and lsass.tactics == ("credential-access",)
    assert sorted(lsass.executions) == ["run-a", "run-b"]
    assert [tactic.name for tactic in cov.by_tactic()] == ["Credential Access", "Discovery"]

    page = admin_client.get(reverse("defender:coverage")).content.decode()
    assert "Credential Access" in page and "LSASS Memory" in page and "Network Service Discovery" in page


def test_coverage_is_of_the_chosen_period_and_actors(admin_client, actor):
    other = make_actor(name="HR laptop", hostname="lt-hr-02")
    executed(actor, [("T1003.001", "prevented")])
    executed(other, [("T1046", "missed")])

    assert [e.technique_id for e in coverage(actor_ids=[other.pk]).techniques] == ["T1046"]
    assert coverage(since=START + timedelta(days=1)).techniques == []
    page = admin_client.get(reverse("defender:coverage") + "?since=2026-12-05&until=2026-12-01")
    assert "The period ends before it starts" in page.content.decode()


def test_the_navigator_layer_follows_layer_format_4_5(admin_client, actor):
    executed(actor, [("T1003.001", "prevented"), ("T1046", "missed"), ("T1082", "pending")], "run-a")

    response = admin_client.get(reverse("defender:coverage-layer"))
    layer = json.loads(response.content)

    assert response["Content-Disposition"].startswith("attachment")
    LAYER_FORMAT.validate(layer)
    assert layer["domain"] == "enterprise-attack"
    by_id = {item["techniqueID"]: item for item in layer["techniques"]}
    assert set(by_id) == {"T1003.001", "T1046", "T1082"}
    assert by_id["T1003.001"]["score"] == 100 and by_id["T1046"]["score"] == 0
    assert "score" not in by_id["T1082"]  # pending: unscored, so the gradient does not colour it as a miss
    assert "run-a" in by_id["T1046"]["comment"]
    assert all(item["color"].startswith("#") and len(item["color"]) == 7 for item in layer["techniques"])
    assert [item["label"] for item in layer["legendItems"]] == ["Prevented", "Alerted", "Detected", "Missed", "Pending"]
    gradient = layer["gradient"]
    assert len(gradient["colors"]) >= 2 and gradient["maxValue"] > gradient["minValue"]
    assert navigator_layer(coverage())["techniques"] == layer["techniques"]


@pytest.mark.parametrize(
    "broken",
    [
        {"versions": {"navigator": "4.8.0", "layer": "4.5"}},
        {"versions": {"navigator": "5.1.0", "layer": "4.4"}},
        {"domain": "enterprise"},
        {"techniques": [{"techniqueID": "T1003.1"}]},
        {"techniques": [{"techniqueID": "T1046", "colour": "#ff0000"}]},
        {"legendItems": [{"label": "Missed", "color": "red"}]},
        {"gradient": {"colors": ["#dc3545"], "minValue": 0, "maxValue": 100}},
    ],
)
def test_the_layer_format_schema_refuses_what_the_format_does_not_allow(broken):
    layer = navigator_layer(coverage()) | broken

    with pytest.raises(jsonschema.ValidationError):
        LAYER_FORMAT.validate(layer)


def test_a_procedure_started_on_the_until_day_is_in_the_period(actor):
    executed(actor, [("T1046", "missed")])
    form_day = START.date().isoformat()

    form = CoverageForm({"since": form_day, "until": form_day})
    assert form.is_valid()
    since, until = form.period()
    assert [e.technique_id for e in coverage(since=since, until=until).techniques] == ["T1046"]
    assert Procedure.objects.count() == 1
