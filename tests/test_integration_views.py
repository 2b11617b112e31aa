"""Settings > Integrations: the list, Add/Edit with a write-only secret, the detail page, Delete and the Test."""

import json
import re
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from defender import presets
from defender.models import Alert, Integration, RemoteNode, TestRun
from tests.factories import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT_ID,
    TYPED_SECRET,
    make_actor,
    make_integration,
    make_proxy_rule,
    simulator_integration,
)
from tests.factories import integration_form_data as form_data

LIST = reverse("defender:integration-list")
ADD = reverse("defender:integration-add", args=["defender_atp"])
ADD_TEST = reverse("defender:integration-add-test", args=["defender_atp"])


def simulator_form_data(simulator, app=None, **overrides):
    app = app or simulator.app
    values = {
        "name": "Simulator",
        "host": "127.0.0.1",
        "port": str(simulator.port),
        "auth_url": simulator.auth_url,
        "tenant_id": simulator.tenant_id,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "ca_certificate": simulator.ca_pem,
        "connect_timeout": "2",
        "read_timeout": "5",
    }
    return form_data(**{**values, **overrides})


# --- the list -------------------------------------------------------------------------------------------------------


def test_the_list_shows_each_integration_with_its_last_test(admin_client, db):
    make_integration(name="Never tested")
    tested = make_integration(name="Tested", host="us.api.security.microsoft.com")
    Integration.objects.filter(pk=tested.pk).update(
        last_test_at=timezone.now(), last_test_ok=False, last_test_summary="Token failed: the secret is wrong."
    )
    html = admin_client.get(LIST).content.decode()
    assert "Never tested" in html
    assert "us.api.security.microsoft.com:443" in html
    assert 'title="Token failed: the secret is wrong."' in html
    assert reverse("defender:integration-detail", args=[tested.pk]) in html


def test_the_list_takes_a_fixed_number_of_queries_however_many_integrations(admin_client, db):
    rule = make_proxy_rule()
    for number in range(200):
        Integration.objects.create(
            name=f"Integration {number:03}", host="api.security.microsoft.com", client_id=CLIENT_ID,
            tenant_id=TENANT_ID, proxy_rule=rule if number % 2 else None,
        )  # fmt: skip
    admin_client.get(LIST)  # warm the session and permission caches of this client
    with CaptureQueriesContext(connection) as few:
        admin_client.get(LIST + "?per_page=10")
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(LIST + "?per_page=200")
    assert response.content.decode().count("Integration 1") == 100
    assert len(many) == len(few) <= 8


def test_the_add_integration_menu_lists_the_integration_types(admin_client):
    html = admin_client.get(LIST).content.decode()
    assert "Add Integration" in html
    assert f'href="{ADD}">Defender ATP</a>' in html


def test_a_viewer_sees_no_test_edit_or_delete_on_the_list_or_the_detail_page(viewer_client):
    integration = make_integration()
    for url in (LIST, reverse("defender:integration-detail", args=[integration.pk])):
        html = viewer_client.get(url).content.decode()
        assert integration.name in html
        for word in ("> Test", "> Edit", "> Delete", "Add Integration"):
            assert word not in html, (url, word)


def test_a_name_with_html_is_shown_escaped(admin_client):
    make_integration(name="<script>alert(1)</script>")
    html = admin_client.get(LIST).content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# --- Add and Edit ---------------------------------------------------------------------------------------------------


def test_the_add_form_starts_on_the_default_preset_with_every_preset_on_the_page(admin_client):
    response = admin_client.get(ADD)
    html = response.content.decode()
    default = presets.default_preset(presets.MDE)
    assert f'value="{default.host}"' in html
    for preset in presets.PRESETS:
        assert f'data-preset-host="{preset.host}"' in html
    data = json.loads(html.split('id="integration-presets" type="application/json">')[1].split("</script>")[0])
    assert data[presets.MDE]["roles"] == ["Alert.Read.All", "Machine.Read.All"]
    assert [p["label"] for p in data[presets.MDE]["presets"] if p["common"]] == ["Global", "US", "EU", "UK"]


def test_the_add_form_lists_the_azure_permissions_of_each_flavour(admin_client):
    html = admin_client.get(ADD).content.decode()
    assert "Alert.Read.All and Machine.Read.All" in html and "WindowsDefenderATP" in html
    assert "SecurityAlert.Read.All" in html
    assert "registered for the SIEM connector" in html


def test_the_fields_come_in_the_order_of_the_product_with_its_labels(admin_client):
    html = admin_client.get(ADD).content.decode()
    names = ["name", "location_0", "api_flavour", "host", "port", "protocol", "client_id", "client_secret"]
    names += ["api_version", "auth_url", "tenant_id", "resource", "proxy_rule", "connect_timeout", "secret_expires_on"]
    positions = [html.index(f'id="id_{name}"') for name in names]
    assert positions == sorted(positions)
    assert positions[-3] < html.index("Advanced options</button>") < positions[-2]
    for label in ["API flavour", "Client ID", "Client Secret", "API Version", "Auth URL", "Tenant ID", "Resource"]:
        assert f"{label}<span" in html or f"{label}\n" in html, label


def test_remote_is_shown_but_cannot_be_chosen_while_there_is_no_remote_node(admin_client):
    html = admin_client.get(ADD).content.decode()
    assert "Remote integrations need a remote node: add one in Settings > Remote Nodes first." in html
    assert 'value="remote"' in html and "disabled" in html.split('value="remote"')[1].split(">")[0]
    response = admin_client.post(ADD, form_data(location="remote"))
    assert response.status_code == 200
    assert not Integration.objects.exists()


def test_remote_needs_a_node_and_saves_it(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    html = admin_client.get(ADD).content.decode()
    assert "disabled" not in html.split('value="remote"')[1].split(">")[0]
    response = admin_client.post(ADD, form_data(location="remote"))
    assert "Choose the remote node that runs this integration." in response.content.decode()
    assert not Integration.objects.exists()
    admin_client.post(ADD, form_data(location="remote", remote_node=node.pk))
    integration = Integration.objects.get()
    assert integration.location == "remote" and integration.remote_node == node


def test_switching_back_to_local_drops_the_node(admin_client):
    node = RemoteNode.objects.create(name="dmz-node")
    admin_client.post(ADD, form_data(location="remote", remote_node=node.pk))
    integration = Integration.objects.get()
    admin_client.post(
        f"/settings/integrations/{integration.pk}/edit/", form_data(location="local", remote_node=node.pk)
    )
    integration.refresh_from_db()
    assert integration.location == "local" and integration.remote_node is None


def test_submit_saves_the_integration_and_goes_back_to_the_list(admin_client, admin_user):
    response = admin_client.post(ADD, form_data(), follow=True)
    assert response.redirect_chain == [(LIST, 302)]
    assert "Integration Defender EU was added." in response.content.decode()
    integration = Integration.objects.get()
    assert integration.client_secret == TYPED_SECRET
    assert integration.created_by == admin_user and integration.updated_by == admin_user


def test_errors_appear_next_to_their_fields_with_the_input_kept_and_nothing_saved(admin_client):
    data = form_data(name="Kept name", port="abc", host="https://eu.example.com/x", tenant_id="not a tenant")
    response = admin_client.post(ADD, data)
    html = response.content.decode()
    assert response.status_code == 200
    assert not Integration.objects.exists()
    assert 'value="Kept name"' in html and 'value="not a tenant"' in html
    for message in ("Enter a whole number.", "without http:// or https://", "directory (tenant) ID"):
        assert message in html
    assert html.index("Enter a whole number.") > html.index('id="id_port"')
    assert "The secret you typed is kept" in html
    assert TYPED_SECRET not in html


@pytest.mark.parametrize(
    "field, value",
    [
        ("port", "99999999999999999999999999"),
        ("port", "-1"),
        ("connect_timeout", "1e309"),
        ("connect_timeout", "nan"),
        ("page_size", "1" * 40),
        ("secret_expires_on", "2024-02-30"),
        ("ca_certificate", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"),
        ("proxy_rule", "999"),
        ("api_flavour", "<b>bogus</b>"),
        ("name", "x" * 5000),
    ],
)
def test_nothing_typed_gives_a_server_error(admin_client, field, value):
    response = admin_client.post(ADD, form_data(**{field: value}))
    assert response.status_code == 200
    assert "is-invalid" in response.content.decode()
    assert not Integration.objects.exists()


def test_the_advanced_options_open_by_themselves_when_one_has_an_error(admin_client):
    closed = admin_client.post(ADD, form_data(port="abc")).content.decode()
    opened = admin_client.post(ADD, form_data(page_size="0")).content.decode()
    assert re.search(r'id="advanced-options"\s+class="collapse border-start', closed)
    assert re.search(r'id="advanced-options"\s+class="collapse show', opened)


def test_the_secret_is_required_on_add(admin_client):
    response = admin_client.post(ADD, form_data(client_secret=""))
    assert "This field is required." in response.content.decode()
    assert not Integration.objects.exists()


def test_edit_never_shows_the_secret_and_a_blank_secret_keeps_it(admin_client):
    integration = make_integration(secret_expires_on=date(2030, 1, 31))
    edit = reverse("defender:integration-edit", args=[integration.pk])
    html = admin_client.get(edit).content.decode()
    assert CLIENT_SECRET not in html
    assert "A secret is saved (expires on 2030-01-31). Leave blank to keep it." in html
    response = admin_client.post(edit, form_data(name="Renamed", client_secret="", secret_expires_on="2030-01-31"))
    assert response.status_code == 302
    integration.refresh_from_db()
    assert integration.name == "Renamed"
    assert integration.client_secret == CLIENT_SECRET


def test_a_new_secret_on_edit_replaces_the_stored_one(admin_client):
    integration = make_integration()
    admin_client.post(reverse("defender:integration-edit", args=[integration.pk]), form_data(client_secret="new-one"))
    integration.refresh_from_db()
    assert integration.client_secret == "new-one"


def test_no_page_ever_contains_a_stored_secret(admin_client):
    rule = make_proxy_rule(username="proxy-user", password="proxy-password-xyz")
    integration = make_integration(proxy_rule=rule)
    pages = [
        LIST,
        reverse("defender:integration-detail", args=[integration.pk]),
        reverse("defender:integration-edit", args=[integration.pk]),
        reverse("defender:integration-delete", args=[integration.pk]),
        reverse("defender:proxyrule-list"),
        reverse("defender:proxyrule-detail", args=[rule.pk]),
        reverse("defender:proxyrule-edit", args=[rule.pk]),
    ]
    for url in pages:
        body = admin_client.get(url).content.decode()
        assert CLIENT_SECRET not in body, url
        assert "proxy-password-xyz" not in body, url


def test_the_detail_page_says_a_secret_is_saved_and_when_it_expires(admin_client):
    integration = make_integration(secret_expires_on=date(2030, 1, 31))
    html = admin_client.get(reverse("defender:integration-detail", args=[integration.pk])).content.decode()
    assert "A secret is saved, expires on 2030-01-31." in html
    assert CLIENT_SECRET not in html


def test_an_unknown_integration_type_is_not_found(admin_client):
    assert admin_client.get(reverse("defender:integration-add", args=["nessus"])).status_code == 404


# --- Delete ---------------------------------------------------------------------------------------------------------


def test_delete_says_how_many_stored_alerts_go_with_it(admin_client):
    integration = make_integration()
    actor = make_actor()
    for number in range(3):
        alert = Alert.objects.create(
            tenant_id=integration.tenant_id, actor=actor, alert_id=f"da{number}", title="Suspicious PowerShell",
            first_seen_at=timezone.now(), updated_at=timezone.now(),
        )  # fmt: skip
        alert.sources.create(integration=integration, first_seen_at=timezone.now(), last_seen_at=timezone.now())
    url = reverse("defender:integration-delete", args=[integration.pk])
    assert "3 stored alerts" in admin_client.get(url).content.decode()
    response = admin_client.post(url, follow=True)
    assert "Integration Defender EU was deleted." in response.content.decode()
    assert not Integration.objects.exists() and not Alert.objects.exists()


# --- the Test -------------------------------------------------------------------------------------------------------


def test_the_test_is_post_only(admin_client):
    integration = make_integration()
    assert admin_client.get(reverse("defender:integration-test", args=[integration.pk])).status_code == 405


def test_a_viewer_may_not_run_a_test_or_change_anything(viewer_client):
    integration = make_integration()
    for name in ("integration-test", "integration-edit", "integration-delete", "integration-edit-test"):
        url = reverse(f"defender:{name}", args=[integration.pk])
        assert viewer_client.post(url).status_code == 403, name
    assert viewer_client.post(ADD, form_data()).status_code == 403
    assert viewer_client.post(ADD_TEST, form_data()).status_code == 403
    assert not Integration.objects.exclude(pk=integration.pk).exists()


def test_a_test_without_javascript_leads_to_its_run_page_with_the_steps_and_stores_the_outcome(admin_client, simulator):
    integration = simulator_integration(simulator)
    response = admin_client.post(reverse("defender:integration-test", args=[integration.pk]), follow=True)
    html = response.content.decode()
    run = TestRun.objects.get()
    assert response.redirect_chain == [(f"/settings/test-runs/{run.pk}/", 303)]
    for step in ("DNS lookup", "TCP connection", "TLS handshake", "Token", "Permissions", "API call"):
        assert f'<strong class="step-name">{step}</strong>' in html
    assert "The Test passed." in html
    assert '<meta http-equiv="refresh"' not in html  # a finished run's page stays as it is
    integration.refresh_from_db()
    assert integration.last_test_ok is True and integration.last_test_at is not None
    assert run.integration == integration and run.verdict == "passed" and len(run.steps) == 6


def test_an_htmx_test_answers_its_runs_panel_and_the_new_badge(admin_client, simulator):
    integration = simulator_integration(simulator)
    response = admin_client.post(reverse("defender:integration-test", args=[integration.pk]), HTTP_HX_REQUEST="true")
    body = response.content.decode()
    run = TestRun.objects.get()
    assert "<html" not in body
    assert body.lstrip().startswith(f'<section id="test-run-{run.pk}"')
    assert body.count('class="d-flex gap-2 py-1 step step-passed"') == 6
    assert f'<span id="integration-{integration.pk}-badge" hx-swap-oob="true">' in body
    assert ">Passed</span>" in body
    assert "hx-get" not in body  # finished: nothing left to poll


def test_an_unfinished_run_polls_its_own_page_and_refreshes_without_javascript(admin_client, admin_user):
    integration = make_integration()
    run = TestRun.objects.create(subject="integration", integration=integration, title=integration.name)
    TestRun.objects.filter(pk=run.pk).update(
        steps=[{"name": "DNS lookup", "outcome": "passed", "duration_ms": 3, "message": "Resolved."}]
    )
    panel = admin_client.get(run.get_absolute_url(), HTTP_HX_REQUEST="true").content.decode()
    assert f'hx-get="/settings/test-runs/{run.pk}/" hx-trigger="load delay:500ms" hx-swap="outerHTML"' in panel
    assert "DNS lookup" in panel and "Testing…" in panel and "The Test" not in panel
    assert "hx-swap-oob" not in panel  # the badge changes only when the run is finished
    page = admin_client.get(run.get_absolute_url()).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="1"></noscript>' in page


def test_polling_a_run_takes_a_fixed_number_of_queries_however_many_steps_it_has(admin_client):
    integration = make_integration()
    run = TestRun.objects.create(subject="integration", integration=integration, title=integration.name)
    url = run.get_absolute_url()
    admin_client.get(url, HTTP_HX_REQUEST="true")  # warm the session and permission caches of this client
    counts = []
    for steps in (1, 6):
        step = {"name": "DNS lookup", "outcome": "passed", "duration_ms": 3, "message": "Resolved."}
        TestRun.objects.filter(pk=run.pk).update(steps=[step] * steps)
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url, HTTP_HX_REQUEST="true").content.decode().count("DNS lookup") == steps
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 5


def test_a_viewer_may_watch_a_run_and_an_unknown_run_is_not_found(viewer_client):
    integration = make_integration()
    run = TestRun.objects.create(subject="integration", integration=integration, title=integration.name)
    assert viewer_client.get(run.get_absolute_url()).status_code == 200
    assert viewer_client.get("/settings/test-runs/999/").status_code == 404


def test_a_failed_step_shows_its_advice_and_the_later_steps_are_skipped(admin_client, simulator):
    integration = simulator_integration(simulator, client_secret="wrong-secret")
    url = reverse("defender:integration-test", args=[integration.pk])
    html = admin_client.post(url, follow=True).content.decode()
    assert "paste the secret&#x27;s Value, not its ID" in html
    assert html.count("Skipped:") == 2
    integration.refresh_from_db()
    assert integration.last_test_ok is False
    assert "Token failed" in integration.last_test_summary


def test_the_test_on_the_form_uses_the_values_as_typed_and_saves_nothing(admin_client, simulator):
    response = admin_client.post(ADD_TEST, simulator_form_data(simulator))
    html = response.content.decode()
    assert "The Test passed." in html
    assert not Integration.objects.exists()
    run = TestRun.objects.get()
    assert run.subject == "typed" and run.integration is None and len(run.values_digest) == 64
    assert simulator.app.client_secret not in str(TestRun.objects.values().get())  # kept in memory only
    assert 'value="127.0.0.1"' in html
    assert simulator.app.client_secret not in html
    assert "The secret you typed is kept" in html


def test_the_test_on_the_edit_form_uses_the_stored_secret_when_left_blank(admin_client, simulator):
    integration = simulator_integration(simulator)
    url = reverse("defender:integration-edit-test", args=[integration.pk])
    response = admin_client.post(url, simulator_form_data(simulator, client_secret="", name="Not saved"))
    assert "The Test passed." in response.content.decode()
    integration.refresh_from_db()
    assert integration.name == "Simulator" and integration.last_test_at is None


def test_an_htmx_test_of_an_invalid_form_sends_the_form_back_with_its_errors(admin_client):
    response = admin_client.post(ADD_TEST, form_data(port="abc"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response["HX-Retarget"] == "#integration-form"
    assert html.lstrip().startswith('<form id="integration-form"')
    assert "Enter a whole number." in html
    assert not Integration.objects.exists()


def test_pointing_the_auth_url_elsewhere_needs_the_secret_typed_again(admin_client):
    admin_client.post(ADD, form_data())
    integration = Integration.objects.get()
    edit = f"/settings/integrations/{integration.pk}/edit/"
    moved = form_data(client_secret="", auth_url="https://login.attacker.example")
    for url in (edit, edit + "test/"):
        body = admin_client.post(url, moved).content.decode()
        assert "Type the client secret again: where it is sent changed (Auth URL)" in body, url
    integration.refresh_from_db()
    assert integration.auth_url == "https://login.microsoftonline.com"
    admin_client.post(edit, form_data(client_secret="", name="Renamed"))  # other changes keep the secret
    integration.refresh_from_db()
    assert integration.name == "Renamed" and integration.client_secret == TYPED_SECRET


def test_a_typed_secret_is_marked_sensitive_so_error_reports_hide_it(admin_client):
    response = admin_client.post(ADD, form_data(port="abc"))
    assert response.wsgi_request.sensitive_post_parameters == ("client_secret", "client_certificate")


def test_a_secret_that_expires_soon_or_has_expired_is_flagged_in_the_list_and_on_its_page(admin_client):
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.localdate()
    soon = make_integration(name="Soon", secret_expires_on=today + timedelta(days=10))
    make_integration(name="Expired", secret_expires_on=today - timedelta(days=1))
    make_integration(name="Fine", secret_expires_on=today + timedelta(days=200))
    body = admin_client.get(LIST).content.decode()
    assert body.count("Secret expires soon") == 1 and body.count("Secret expired<") == 1
    page = admin_client.get(f"/settings/integrations/{soon.pk}/").content.decode()
    assert "The client secret expires in 10 days" in page


def test_a_secret_expiry_date_in_the_past_is_saved_with_a_warning_that_the_integration_will_fail(admin_client):
    response = admin_client.post(
        reverse("defender:integration-add", args=["defender_atp"]),
        form_data(secret_expires_on="2020-01-31"),
        follow=True,
    )
    html = response.content.decode()
    assert "Integration Defender EU was added." in html
    assert "The client secret expired on 2020-01-31" in html and "will fail" in html
    assert Integration.objects.get().secret_expires_on == date(2020, 1, 31)
