"""The integration form's certificate field in a real browser: choosing Certificate shows it instead of the client
secret, a PEM file uploaded there is saved, and the page then shows the certificate's thumbprints, never its key."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from defender.services.client_certificate import parse_certificate_credential
from tests.conftest import PASSWORD
from tests.factories import simulator_integration

pytestmark = pytest.mark.browser


def test_switching_an_integration_to_a_certificate_by_uploading_its_pem_file(
    page, live_server, log_in, admin_user, simulator, tmp_path
):
    integration = simulator_integration(simulator)
    pem_file = Path(tmp_path) / "app.pem"
    pem_file.write_text(simulator.app.certificate_pem)
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/edit/")

    certificate_box = page.get_by_label("Client certificate")
    expect(certificate_box).to_be_hidden()  # the secret is the credential in use
    page.get_by_label("Certificate", exact=True).check()
    expect(certificate_box).to_be_visible()
    expect(page.get_by_label("Client Secret")).to_be_hidden()
    page.get_by_label("or upload the PEM file").set_input_files(str(pem_file))
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text(f"Integration {integration.name} was")).to_be_visible()

    page.goto(f"{live_server.url}/settings/integrations/{integration.pk}/")
    certificate = parse_certificate_credential(simulator.app.certificate_pem)
    expect(page.get_by_text(certificate.sha256_thumbprint)).to_be_visible()
    key_line = certificate.private_key_pem.splitlines()[1]
    assert key_line not in page.content()
