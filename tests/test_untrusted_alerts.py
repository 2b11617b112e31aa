"""Alerts from a server that does not keep to the documented shapes (the simulator's hostile_alerts switch, over real
HTTPS): every field of every flavour is read as untrusted, what cannot be read is skipped and counted, and one
hostile integration never costs another its stored results, here or through a remote node."""

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone

from defender import alert_store, presets
from defender.models import Actor, Alert, AlertFetch, AlertSource, Integration, Job
from defender.operations import alerts as operations_alerts
from defender.remote import jobs, tokens
from defender.services import alerts
from defender.services.alerts import alerts_for_actor
from defender.simulator import Simulator
from tests.factories import make_integration, simulator_integration
from tests.fixtures.connection import settings_for
from tests.remote_helpers import make_node_with_token_file, remote_integration_for, start_agent, stop, wait_for_job

MONTH = timedelta(days=31)
ACTOR = "ws-fin-07"
ACTOR_MACHINE = "ws-fin-07.corp.contoso.com"
FLAVOURS = [presets.MDE, presets.GRAPH, presets.SIEM]
# Each flavour's own names for the fields an Alert is made of.
ID = {presets.MDE: "id", presets.GRAPH: "id", presets.SIEM: "AlertId"}
TITLE = {presets.MDE: "title", presets.GRAPH: "title", presets.SIEM: "AlertTitle"}
CREATED = {presets.MDE: "alertCreationTime", presets.GRAPH: "createdDateTime", presets.SIEM: "AlertTime"}
EVERY_FIELD_BUT_ID_AND_HOST = {
    presets.MDE: [
        "title",
        "severity",
        "status",
        "category",
        "detectionSource",
        "alertCreationTime",
        "firstEventTime",
        "lastEventTime",
        "computerDnsName",
        "mitreTechniques",
    ],
    presets.GRAPH: [
        "title",
        "severity",
        "status",
        "category",
        "detectionSource",
        "createdDateTime",
        "firstActivityDateTime",
        "lastActivityDateTime",
        "mitreTechniques",
        "alertWebUrl",
    ],
    # The SIEM API names the host twice; one readable name is enough.
    presets.SIEM: ["AlertTitle", "Severity", "Category", "Source", "AlertTime", "ComputerDnsName", "LinkToMTP"],
}


def month():
    until = datetime.now(UTC)
    return until - MONTH, until


def ask(simulator, flavour, hostile=""):
    """What Get alerts finds on the actor's machine while the simulator serves its first alerts as ``hostile``."""
    simulator.faults.set(hostile_alerts=hostile, hostile_alerts_on=ACTOR)
    return alerts_for_actor(settings_for(simulator, flavour), [ACTOR], *month())


def the_one_changed(before, after):
    titles = {alert.id: alert for alert in before.alerts}
    changed = [alert for alert in after.alerts if alert != titles[alert.id]]
    assert len(changed) == 1, changed
    return changed[0]


# --- reading ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(
    ("kind", "read_as"),
    [
        ("object", ""),
        ("list", ""),
        ("boolean", ""),
        ("null", ""),
        ("null-text", ""),
        ("missing", ""),
        ("number", "42"),
        ("huge", "H" * 500),
    ],
)
def test_a_title_that_is_not_text_keeps_its_alert_with_the_title_it_can_read(clean_simulator, flavour, kind, read_as):
    before = ask(clean_simulator, flavour)
    after = ask(clean_simulator, flavour, f"{TITLE[flavour]}={kind}")
    assert [alert.id for alert in after.alerts] == [alert.id for alert in before.alerts]
    assert the_one_changed(before, after).title == read_as
    assert after.message == before.message


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", ["object", "list"])
def test_every_field_but_the_id_unreadable_still_gives_the_alert_with_nothing_made_up(clean_simulator, flavour, kind):
    before = ask(clean_simulator, flavour)
    after = ask(clean_simulator, flavour, ",".join(f"{field}={kind}" for field in EVERY_FIELD_BUT_ID_AND_HOST[flavour]))
    assert {alert.id for alert in after.alerts} == {alert.id for alert in before.alerts}
    alert = the_one_changed(before, after)
    assert (alert.title, alert.category, alert.detection_source) == ("", "", "")
    assert (alert.severity, alert.status) == ("Unspecified", "Unknown")
    assert (alert.created, alert.first_event, alert.last_event) == (None, None, None)
    # A list of text is a list of technique IDs, however odd; anything else is none.
    techniques = ("a list", "where text belongs") if kind == "list" and flavour != presets.SIEM else ()
    assert alert.mitre_techniques == techniques
    assert alert.machine_name == (ACTOR if flavour == presets.SIEM else ACTOR_MACHINE)
    assert alert.matched_name == ACTOR
    assert after.alerts[-1] == alert  # undated, so listed after every dated alert
    assert after.message == before.message


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", ["missing", "null", "null-text", "object", "list", "boolean", "empty", "huge"])
def test_an_alert_without_a_usable_id_or_that_is_not_an_object_is_skipped_and_counted(clean_simulator, flavour, kind):
    before = ask(clean_simulator, flavour)
    after = ask(clean_simulator, flavour, f"{ID[flavour]}={kind}; alert=list")
    assert len(after.alerts) == len(before.alerts) - 2
    assert {alert.id for alert in after.alerts} < {alert.id for alert in before.alerts}
    assert after.message.endswith(" 2 alerts could not be read and were skipped.")
    assert after.message.startswith(f"{len(after.alerts)} alerts on {ACTOR}")


@pytest.mark.parametrize(
    ("flavour", "hostile"),
    [
        (presets.GRAPH, "evidence.0.deviceDnsName=object"),
        (presets.GRAPH, "evidence=object"),
        (presets.SIEM, "ComputerDnsName=object,MachineName=list"),
    ],
)
def test_an_alert_whose_machine_cannot_be_read_is_counted_as_unreadable_not_as_elsewhere(
    clean_simulator, flavour, hostile
):
    before = ask(clean_simulator, flavour)
    after = ask(clean_simulator, flavour, hostile)
    assert len(after.alerts) == len(before.alerts) - 1
    assert after.message.endswith(" 1 alert could not be read and was skipped.")


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("kind", ["not-a-time", "overflowing-time", "number", "huge"])
def test_a_creation_time_that_cannot_be_read_leaves_the_alert_undated(clean_simulator, flavour, kind):
    before = ask(clean_simulator, flavour)
    after = ask(clean_simulator, flavour, f"{CREATED[flavour]}={kind}")
    alert = the_one_changed(before, after)
    assert alert.created is None and after.alerts[-1] == alert
    assert len(after.alerts) == len(before.alerts)


@pytest.mark.parametrize(
    ("flavour", "hostile", "fewer"),
    [
        (presets.MDE, "evidence.0=list", 1),
        (presets.MDE, "evidence=object", None),
        (presets.GRAPH, "evidence.1=number", 1),
        (presets.GRAPH, "evidence.1.userAccount=list", 0),
    ],
)
def test_evidence_that_cannot_be_read_is_left_out_and_the_alert_kept(clean_simulator, flavour, hostile, fewer):
    before = {alert.id: alert for alert in ask(clean_simulator, flavour).alerts}
    after = ask(clean_simulator, flavour, hostile)
    alert = the_one_changed(SimpleNamespace(alerts=list(before.values())), after)
    if fewer is None:
        assert alert.evidence == ()
    else:
        assert len(alert.evidence) == len(before[alert.id].evidence) - fewer
    assert after.message == ask(clean_simulator, flavour).message


def test_a_siem_detection_with_unreadable_fields_is_evidence_with_what_can_be_read(clean_simulator):
    before = ask(clean_simulator, presets.SIEM)
    after = ask(
        clean_simulator, presets.SIEM, "CommandLine=object,FileName=list,Sha256=huge,RemediationIsSuccess=number"
    )
    alert = the_one_changed(before, after)
    assert (alert.evidence[0].command_line, alert.evidence[0].file_name) == ("", "")
    assert len(alert.evidence[0].sha256) == alerts.HASH_LENGTH
    assert not alert.evidence[0].remediation_status.endswith(("(succeeded)", "(failed)"))


def test_nothing_is_skipped_when_no_answer_is_hostile(clean_simulator):
    for flavour in FLAVOURS:
        assert "could not be read" not in ask(clean_simulator, flavour).message


def test_the_column_sizes_the_services_cut_to_are_the_models():
    from defender.services import alerts

    sizes = {name: Alert._meta.get_field(name).max_length for name in ("alert_id", "title", "category")}
    assert sizes == {"alert_id": alerts.ID_LENGTH, "title": alerts.TITLE_LENGTH, "category": alerts.CATEGORY_LENGTH}
    assert Alert._meta.get_field("detection_source").max_length == alerts.SOURCE_LENGTH
    assert Alert._meta.get_field("machine_name").max_length == alerts.MACHINE_NAME_LENGTH
    assert Alert._meta.get_field("matched_name").max_length == alerts.MACHINE_NAME_LENGTH
    assert Alert._meta.get_field("portal_url").max_length == alerts.URL_LENGTH


# --- storing: two integrations, one of them hostile ---------------------------------------------------------------

HOSTILE_ANSWER = "; ".join(
    [
        "title=object,computerDnsName=list,category=huge,mitreTechniques=object",
        "id=missing",
        "alert=number",
        "title=nul,detectionSource=surrogate,evidence=deep",
    ]
)


@pytest.fixture(scope="module")
def hostile_simulator(tmp_path_factory):
    """A second Defender, of the same tenant data, that serves hostile alerts (set per test)."""
    with Simulator(seed=1, ca_path=tmp_path_factory.mktemp("hostile") / "ca.pem") as simulator:
        yield simulator


@pytest.fixture
def hostile(hostile_simulator):
    hostile_simulator.faults.set(hostile_alerts=HOSTILE_ANSWER, hostile_alerts_on=ACTOR)
    yield hostile_simulator
    hostile_simulator.faults.clear()


def window():
    until = timezone.now()
    return until - MONTH, until


@pytest.mark.django_db
def test_a_hostile_integration_stores_what_it_could_read_and_the_other_integration_all_of_its_alerts(
    simulator, hostile
):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    good = simulator_integration(simulator, name="Defender")
    bad = simulator_integration(hostile, name="Hostile Defender")

    good_fetch, bad_fetch = operations_alerts.fetch_alerts(actor, [good, bad], *window())

    assert good_fetch.ok and bad_fetch.ok, (good_fetch.message, bad_fetch.message)
    assert Alert.objects.filter(integrations=good).count() == good_fetch.alert_count == 17
    assert Alert.objects.filter(integrations=bad).count() == bad_fetch.alert_count == 15
    assert "could not be read" not in good_fetch.message
    assert bad_fetch.message.endswith(" 2 alerts could not be read and were skipped.")
    stored = Alert.objects.filter(integrations=bad)
    assert stored.filter(title="", category="H" * 100, mitre_techniques=[], machine_name=ACTOR_MACHINE).count() == 1
    for alert in stored:
        text = json.dumps([alert.title, alert.detection_source, alert.raw], ensure_ascii=False)
        assert "\x00" not in text and "\ud800" not in text
    assert stored.filter(title="text with a NUL  inside", detection_source="text with a lone surrogate ? inside")


def test_get_alerts_on_the_actor_page_shows_both_integrations_when_one_is_hostile(admin_client, simulator, hostile):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    good = simulator_integration(simulator, name="Defender")
    bad = simulator_integration(hostile, name="Hostile Defender")

    response = admin_client.post(
        reverse("defender:actor-get-alerts", args=[actor.pk]),
        {"integrations": [good.pk, bad.pk], "window": "30d"},
        follow=True,
    )

    assert response.status_code == 200
    content = response.content.decode()
    assert "2 alerts could not be read and were skipped." in content
    # The hostile Defender serves the same tenant's alerts: each is one row that names both integrations.
    assert response.context["table"].paginator.count == 17


@pytest.mark.django_db
def test_an_answer_that_cannot_be_stored_fails_only_its_own_integration_and_keeps_its_earlier_rows(
    simulator, hostile_simulator, monkeypatch
):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    good = simulator_integration(simulator, name="Defender")
    bad = simulator_integration(hostile_simulator, name="Hostile Defender")
    operations_alerts.fetch_alerts(actor, [good, bad], *window())
    # What the hostile integration returned before: the alerts (shared with the other, of the same tenant) and when
    # it last returned each.
    kept = set(AlertSource.objects.filter(integration=bad).values_list("alert_id", "last_seen_at"))
    row = alert_store._row

    def row_that_fails_for_the_hostile_one(actor, integration, alert, now, **clean):
        if integration == bad:
            raise OverflowError("date value out of range")  # a defect in reading this one integration's answer
        return row(actor, integration, alert, now, **clean)

    monkeypatch.setattr(alert_store, "_row", row_that_fails_for_the_hostile_one)
    asked_again_at = timezone.now()
    good_fetch, bad_fetch = operations_alerts.fetch_alerts(actor, [good, bad], *window())

    assert good_fetch.ok and good_fetch.asked_at >= asked_again_at
    assert set(Alert.objects.filter(integrations=good).values_list("updated_at", flat=True)) == {good_fetch.asked_at}
    assert not bad_fetch.ok and bad_fetch.asked_at == good_fetch.asked_at
    assert bad_fetch.message == (
        "The alerts Hostile Defender sent could not be stored; the server log has the details. "
        "The alerts stored before are kept."
    )
    assert set(AlertSource.objects.filter(integration=bad).values_list("alert_id", "last_seen_at")) == kept


# --- through a remote node ----------------------------------------------------------------------------------------

ANSWER_ALERT = {
    "id": "da638000000000000000_1",
    "title": "Suspicious PowerShell command line",
    "severity": "High",
    "status": "New",
    "category": "Execution",
    "detection_source": "WindowsDefenderAtp",
    "created": "2026-05-01T12:00:00+00:00",
    "first_event": None,
    "last_event": None,
    "machine_name": ACTOR_MACHINE,
    "matched_name": ACTOR,
    "mitre_techniques": ["T1059.001"],
    "portal_url": "https://security.microsoft.com/alerts/da638000000000000000_1",
    "raw": {"id": "da638000000000000000_1"},
}


def claimed_alerts_job(client, actor):
    node, token = make_node_and_token()
    integration = make_integration(
        name="Defender behind the DMZ", location=Integration.Location.REMOTE, remote_node=node
    )
    since, until = window()
    job = jobs.enqueue_alerts(actor, integration, since, until)
    client.post(
        "/api/nodes/check-in/", '{"wait": 0}', content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    return job, token, since, until


def make_node_and_token():
    from defender.models import RemoteNode

    node = RemoteNode.objects.create(name="dmz-node")
    return node, tokens.issue(node)


def answer(client, job, token, result):
    body = json.dumps({"ok": True, "result": result, "error": ""})
    return client.post(
        f"/api/nodes/jobs/{job.pk}/answer/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


@pytest.mark.django_db
def test_a_node_answer_with_fields_that_are_not_text_is_stored_at_once_with_what_can_be_read(client):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    job, token, since, until = claimed_alerts_job(client, actor)
    odd = {**ANSWER_ALERT, "id": "da2", "title": {"text": "object"}, "machine_name": ["list"], "severity": {}}
    unreadable = {**ANSWER_ALERT, "id": {"not": "an id"}}
    result = {
        "alerts": [ANSWER_ALERT, odd, unreadable, "not an alert"],
        "tried_names": [ACTOR],
        "window": [since.isoformat(), until.isoformat()],
        "message": "4 alerts on ws-fin-07.",
    }

    response = answer(client, job, token, result)

    assert response.status_code == 200
    job.refresh_from_db()
    assert job.state == Job.State.DONE
    fetch = AlertFetch.objects.get(actor=actor)
    assert fetch.ok and fetch.message == "4 alerts on ws-fin-07. 2 alerts could not be read and were skipped."
    stored = {alert.alert_id: alert for alert in Alert.objects.filter(actor=actor)}
    assert set(stored) == {"da638000000000000000_1", "da2"}
    assert (stored["da2"].title, stored["da2"].machine_name, stored["da2"].severity) == ("", "", "Unspecified")


@pytest.mark.django_db
def test_a_node_answer_that_cannot_be_stored_fails_its_job_at_once_with_the_reason(client, monkeypatch):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    job, token, since, until = claimed_alerts_job(client, actor)

    def unstorable(*args, **kwargs):
        raise OverflowError("date value out of range")

    monkeypatch.setattr(alert_store, "_row", unstorable)
    result = {"alerts": [ANSWER_ALERT], "tried_names": [ACTOR], "window": [since.isoformat(), until.isoformat()]}
    response = answer(client, job, token, {**result, "message": "1 alert."})

    assert response.status_code == 200
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and job.finished_at is not None
    assert job.error.startswith("The alerts Defender behind the DMZ sent could not be stored")
    fetch = AlertFetch.objects.get(actor=actor)
    assert not fetch.ok and fetch.message == job.error


@pytest.mark.parametrize("window_sent", [["yesterday", None], "not a list", None])
@pytest.mark.django_db
def test_a_node_answer_without_a_readable_window_fails_its_job_at_once(client, window_sent):
    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    job, token, _since, _until = claimed_alerts_job(client, actor)
    response = answer(client, job, token, {"alerts": [], "tried_names": [], "window": window_sent, "message": ""})
    assert response.status_code == 400
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "update its agent" in job.error
    assert not AlertFetch.objects.get(actor=actor).ok


def test_a_remote_node_whose_defender_is_hostile_answers_at_once_and_the_local_integration_keeps_its_alerts(
    simulator, hostile, site_over_https, transactional_db, tmp_path
):
    from defender.operations.alerts import get_alerts

    actor = Actor.objects.create(name="Finance workstation", hostname=ACTOR)
    local = simulator_integration(simulator, name="Defender")
    remote_node, token_file = make_node_with_token_file(tmp_path)
    remote = remote_integration_for(hostile, remote_node, name="Hostile Defender behind the DMZ")

    here, job = sorted(get_alerts(actor, [local, remote], *window()), key=lambda job: not job.runs_here)
    agent = start_agent(site_over_https, token_file)
    try:
        job = wait_for_job(job, timeout=60)
        wait_for_job(here, timeout=60)  # the local one, asked by a worker of the site
    finally:
        output = stop(agent)

    assert job.state == Job.State.DONE and job.attempts == 1, output + job.error
    local_fetch, remote_fetch = (actor.alert_fetches.get(integration=each) for each in (local, remote))
    assert local_fetch.ok and Alert.objects.filter(integrations=local).count() == local_fetch.alert_count == 17
    assert remote_fetch.ok and Alert.objects.filter(integrations=remote).count() == remote_fetch.alert_count == 15
    assert remote_fetch.message.endswith(" 2 alerts could not be read and were skipped.")
    deep = Alert.objects.get(integrations=remote, title="text with a NUL  inside")
    assert deep.detection_source == "text with a lone surrogate ? inside"
    assert "(nested too deeply; not kept)" in json.dumps(deep.raw["evidence"])
