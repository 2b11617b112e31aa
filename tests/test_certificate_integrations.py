"""Integrations that sign in with a certificate: the form takes the PEM (pasted or uploaded) and shows what may be
shown of it, the Test passes against the simulator through the site or a remote node, the certificate never shows in
a page, and a saved certificate only goes where it was typed for."""

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from defender.models import Integration, Job
from defender.remote import jobs
from defender.services.client_certificate import parse_certificate_credential
from defender.simulator.seed import make_certificate_pem
from tests.factories import simulator_integration
from tests.remote_helpers import (
    answered_by_agent,
    make_node_with_token_file,
    remote_integration_for,
)
from tests.test_destination_rule import Lab, assert_refused, forget, run_the_test, second_auth_proxy  # noqa: F401
from tests.test_integration_views import simulator_form_data

ADD = reverse("defender:integration-add", args=["defender_atp"])


@pytest.fixture
def lab(simulator, capture, second_capture, proxy, auth_proxy, second_auth_proxy):  # noqa: F811
    return Lab(simulator, capture, second_capture, proxy, auth_proxy, second_auth_proxy)


@pytest.fixture(scope="module")
def unregistered_pem():
    return make_certificate_pem("Not registered on the app")


def key_lines(pem):
    """Lines of the private key's body: none of them may appear anywhere the console shows or records."""
    key = parse_certificate_credential(pem).private_key_pem
    return [line for line in key.splitlines()[1:-1] if len(line) > 20]


def assert_no_key(text, pem):
    # (The textarea's placeholder names the PEM's first line; what must never show is the key's body.)
    assert "PRIVATE KEY-----\n" not in text
    for line in key_lines(pem):
        assert line not in text


def certificate_integration(simulator, pem=None, **fields):
    return simulator_integration(
        simulator,
        credential_type="certificate",
        client_secret="",
        client_certificate=pem or simulator.app.certificate_pem,
        **fields,
    )


def certificate_form(simulator, pem=None, **overrides):
    data = simulator_form_data(simulator, credential_type="certificate", client_secret="", **overrides)
    data["client_certificate"] = pem if pem is not None else simulator.app.certificate_pem
    return data


@pytest.mark.django_db
def test_a_pasted_certificate_is_saved_encrypted_and_its_page_shows_subject_thumbprints_and_expiry(
    admin_client, simulator
):
    response = admin_client.post(ADD, certificate_form(simulator))
    assert response.status_code == 302, response.content.decode()[-2000:]
    integration = Integration.objects.get()
    assert integration.uses_certificate and integration.has_client_certificate and not integration.has_client_secret
    stored = Integration.objects.filter(pk=integration.pk).values_list("client_certificate", flat=True).get()
    assert "PRIVATE KEY" not in stored  # ciphertext at rest
    certificate = parse_certificate_credential(simulator.app.certificate_pem)
    for url in (
        reverse("defender:integration-detail", args=[integration.pk]),
        reverse("defender:integration-edit", args=[integration.pk]),
    ):
        page = html.unescape(admin_client.get(url).content.decode())
        assert certificate.sha1_thumbprint in page and certificate.sha256_thumbprint in page, url
        assert "Defender console (simulated)" in page and f"{certificate.not_after:%Y-%m-%d}" in page
        assert_no_key(page, simulator.app.certificate_pem)


@pytest.mark.django_db
def test_an_uploaded_pem_file_is_taken_like_a_pasted_one(admin_client, simulator):
    data = certificate_form(simulator, pem="")
    data["client_certificate_file"] = SimpleUploadedFile("app.pem", simulator.app.certificate_pem.encode())
    response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Integration.objects.get().certificate.subject == "CN=Defender console (simulated)"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_pem, words",
    [
        (lambda sim, other: sim.app.certificate_pem.split("-----BEGIN CERTIFICATE-----")[0], "No certificate"),
        (
            lambda sim, other: (
                sim.app.certificate_pem.split("-----BEGIN CERTIFICATE-----")[0]
                + "-----BEGIN CERTIFICATE-----"
                + other.split("-----BEGIN CERTIFICATE-----")[1]
            ),
            "does not belong to the private key",
        ),
        (lambda sim, other: "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----", "No private key"),
        (lambda sim, other: "", "Paste or upload the PEM"),
    ],
    ids=["key only", "another certificate", "no key", "nothing"],
)
def test_a_certificate_that_cannot_be_used_is_explained_next_to_the_field_and_the_rest_is_kept(
    admin_client, simulator, unregistered_pem, make_pem, words
):
    pem = make_pem(simulator, unregistered_pem)
    response = admin_client.post(ADD, certificate_form(simulator, pem=pem, name="Certificate EU"))
    assert response.status_code == 200
    form = response.context["form"]
    assert any(words in error for error in form.errors["client_certificate"]), form.errors
    page = html.unescape(response.content.decode())
    assert 'value="Certificate EU"' in page  # the user's other input is kept
    assert_no_key(page, simulator.app.certificate_pem)
    assert not Integration.objects.exists()


@pytest.mark.django_db
def test_a_pasted_certificate_is_not_sent_back_when_another_field_has_an_error(admin_client, simulator):
    response = admin_client.post(ADD, certificate_form(simulator, port="abc"))
    assert response.status_code == 200 and "port" in response.context["form"].errors
    page = html.unescape(response.content.decode())
    assert_no_key(page, simulator.app.certificate_pem)
    assert "Paste or upload the certificate again" in page


@pytest.mark.django_db
def test_a_new_certificate_integration_needs_no_client_secret_and_a_secret_one_still_does(admin_client, simulator):
    secret_without_secret = simulator_form_data(simulator, client_secret="")
    assert "client_secret" in admin_client.post(ADD, secret_without_secret).context["form"].errors
    assert admin_client.post(ADD, certificate_form(simulator)).status_code == 302


@pytest.mark.django_db
def test_the_saved_certificate_integration_passes_the_test_and_says_it_used_the_certificate(admin_client, simulator):
    integration = certificate_integration(simulator)
    page = run_the_test(admin_client, integration)
    prefix = parse_certificate_credential(simulator.app.certificate_pem).thumbprint_prefix
    assert f"with the client certificate {prefix}…" in page
    integration.refresh_from_db()
    assert integration.last_test_ok is True, integration.last_test_summary
    assert_no_key(page, simulator.app.certificate_pem)


@pytest.mark.django_db
def test_a_certificate_not_registered_on_the_app_fails_the_test_with_the_aadsts700027_advice(
    admin_client, simulator, unregistered_pem, caplog
):
    integration = certificate_integration(simulator, unregistered_pem)
    page = run_the_test(admin_client, integration)
    assert "AADSTS700027" in page and "not registered on the app" in page
    integration.refresh_from_db()
    assert integration.last_test_ok is False
    for text in (page, caplog.text, integration.last_test_summary, repr(integration.to_settings())):
        assert_no_key(text, unregistered_pem)


@pytest.mark.django_db
def test_a_certificate_expiring_within_30_days_is_warned_about(admin_client, simulator):
    from datetime import UTC, datetime, timedelta

    pem = make_certificate_pem("Expiring soon", days=10, now=datetime.now(UTC))
    integration = certificate_integration(simulator, pem)
    assert "The client certificate expires in" in integration.certificate_expiry_warning
    page = html.unescape(
        admin_client.get(reverse("defender:integration-detail", args=[integration.pk])).content.decode()
    )
    assert "The client certificate expires in" in page
    later = make_certificate_pem("Far off", days=365, now=datetime.now(UTC) + timedelta(days=1))
    assert certificate_integration(simulator, later, name="Far off").certificate_expiry_warning == ""


# --- the destination rule ---------------------------------------------------------------------------------------


def saw_assertion(capture):
    return capture.saw("client_assertion=")


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["auth_url", "tenant_id", "port"])
def test_a_raw_update_of_where_a_certificate_goes_sends_it_nowhere_until_it_is_typed_again(admin_client, lab, field):
    integration = certificate_integration(
        lab.simulator,
        host=lab.capture.host,
        port=lab.capture.port,
        auth_url=lab.capture.url,
        ca_certificate=lab.capture.ca_pem,
    )
    update = {
        "auth_url": {"auth_url": lab.second_capture.url},
        "tenant_id": {"tenant_id": lab.simulator.tenant_domain},
        "port": {"port": lab.second_capture.port},
    }[field]
    watched = lab.capture if field == "tenant_id" else lab.second_capture
    Integration.objects.filter(pk=integration.pk).update(**update)
    forget(watched)
    page = run_the_test(admin_client, integration)
    assert "client certificate" in page
    assert_refused(page)
    assert watched.connections == 0 and not saw_assertion(watched) and not watched.saw_bearer_token

    # Typed again, it goes there: the capture would have seen it, had the rule not held.
    fresh = Integration.objects.get(pk=integration.pk)
    fresh.client_certificate = lab.simulator.app.certificate_pem
    fresh.save()
    run_the_test(admin_client, fresh)
    arrived = watched.saw_bearer_token if field == "port" else saw_assertion(watched)
    assert arrived, "the capture never saw the certificate's assertion: this test could not fail"


@pytest.mark.django_db
def test_the_edit_form_asks_for_the_certificate_again_when_the_auth_url_moves(admin_client, lab):
    from tests.browser_form import form_data

    integration = certificate_integration(
        lab.simulator,
        host=lab.capture.host,
        port=lab.capture.port,
        auth_url=lab.capture.url,
        ca_certificate=lab.capture.ca_pem,
    )
    edit = reverse("defender:integration-edit", args=[integration.pk])
    data = form_data(admin_client.get(edit).content.decode(), "integration-form")
    data["auth_url"] = [lab.second_capture.url]
    body = html.unescape(admin_client.post(edit, data).content.decode())
    assert "Type the client certificate again: where it is sent changed (Auth URL)" in body
    stored = Integration.objects.get(pk=integration.pk)
    assert stored.client_certificate_destination == integration.client_certificate_destination
    assert stored.auth_url == lab.capture.url


@pytest.mark.django_db
def test_a_certificate_is_sealed_on_its_own_and_the_secret_seal_does_not_cover_it(simulator):
    integration = certificate_integration(simulator)
    assert integration.client_certificate_destination["mac"]
    assert integration.client_secret_destination == {}
    # The record's seal copied onto the certificate does not verify: it was made for another secret.
    with_secret = simulator_integration(simulator, name="With a secret")
    Integration.objects.filter(pk=integration.pk).update(
        client_certificate_destination=with_secret.client_secret_destination
    )
    from defender.services.errors import SecretDestinationChanged

    with pytest.raises(SecretDestinationChanged):
        Integration.objects.get(pk=integration.pk).to_settings()


# --- a remote node ----------------------------------------------------------------------------------------------


def test_a_remote_node_receives_the_certificate_and_passes_the_test_with_it(
    simulator, site_over_https, transactional_db, tmp_path
):
    remote_node, token_file = make_node_with_token_file(tmp_path)
    integration = remote_integration_for(
        simulator,
        remote_node,
        credential_type="certificate",
        client_secret="",
        client_certificate=simulator.app.certificate_pem,
    )
    job = jobs.enqueue(integration, Job.Kind.TEST)
    job, output = answered_by_agent(site_over_https, token_file, job)
    assert job.state == Job.State.DONE, output
    integration.refresh_from_db()
    assert integration.last_test_ok is True, integration.last_test_summary
    token_step = next(step for step in integration.last_test_steps if step["name"] == "Token")
    assert "with the client certificate" in token_step["message"]
    assert_no_key(output, simulator.app.certificate_pem)
