"""An engineer uploads an ATTiRe log in the browser, sees what Defender did about each procedure, overrides one,
reads the coverage, and opens the API's docs (served by the site, under its content security policy)."""

import json
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from defender.simulator import Simulator
from tests.conftest import PASSWORD
from tests.factories import make_actor, simulator_integration

pytestmark = pytest.mark.browser

LOG_FILE = Path(__file__).parent / "fixtures" / "attire" / "finance-workstation.json"


@pytest.fixture(scope="module")
def responding_simulator(tmp_path_factory):
    """A simulator of its own, told how Defender responded to the log's procedures: the LSASS dump blocked, the
    PowerShell download cradle recorded without an alert."""
    log = json.loads(LOG_FILE.read_text())
    with Simulator(seed=41, ca_path=tmp_path_factory.mktemp("executions") / "ca.pem") as sim:
        machine = sim.data.machine_by_name("ws-fin-07.corp.contoso.com")["computerDnsName"]
        for procedure, response in zip(log["procedures"], ["prevented", "detected"], strict=True):
            step = procedure["steps"][0]
            start = datetime.fromisoformat(step["time-start"].replace("Z", "+00:00"))
            stop = datetime.fromisoformat(step["time-stop"].replace("Z", "+00:00"))
            sim.procedure_ran(machine, procedure["mitre-technique-id"], step["command"], start, stop, response)
        yield sim


def test_an_uploaded_log_shows_each_outcome_and_an_override_is_kept(
    page, live_server, log_in, admin_user, responding_simulator, docs_screenshot
):
    simulator_integration(responding_simulator, name="Defender (simulator)")
    make_actor(name="Finance workstation", hostname="ws-fin-07")
    log_in(admin_user.username, PASSWORD)

    page.goto(f"{live_server.url}/executions/")
    page.get_by_role("link", name="Import ATTiRe log").click()
    page.get_by_label("ATTiRe log").set_input_files(str(LOG_FILE))
    page.get_by_role("button", name="Import").click()
    expect(page.get_by_text("Imported execution")).to_be_visible()

    # A worker evaluates the new execution; the page shows what it has found once it has.
    lsass = page.locator("article.procedure").filter(has_text="T1003.001")
    cradle = page.locator("article.procedure").filter(has_text="T1059.001")
    lsass_badge, cradle_badge = (article.locator(".card-header .badge").first for article in (lsass, cradle))
    for _ in range(60):
        if lsass_badge.inner_text() == "Prevented" and cradle_badge.inner_text() == "Detected":
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(lsass_badge).to_have_text("Prevented")
    expect(lsass.locator(".matched-alerts")).to_contain_text("a process of its evidence ran the procedure's command")
    expect(cradle_badge).to_have_text("Detected")
    expect(cradle.locator(".outcome-note")).to_contain_text("recorded the procedure's process")
    docs_screenshot(page, "execution")

    cradle.get_by_text("Override the outcome").click()
    cradle.get_by_label("Outcome").select_option("alerted")
    cradle.get_by_label("Reason").fill("The SOC raised a ticket from the SIEM")
    cradle.get_by_role("button", name="Save").click()
    expect(page.get_by_text("is now Alerted (overridden)")).to_be_visible()
    expect(cradle_badge).to_have_text("Alerted")
    expect(cradle.locator(".card-header").get_by_text("overridden", exact=True)).to_be_visible()
    expect(cradle.locator(".override")).to_contain_text("The SOC raised a ticket from the SIEM")

    page.get_by_role("link", name="Coverage").click()
    expect(page.get_by_role("heading", name="Credential Access")).to_be_visible()
    credential_access = page.locator("section").filter(has=page.get_by_role("heading", name="Credential Access"))
    expect(credential_access).to_contain_text("T1003.001 LSASS Memory")
    expect(credential_access.locator(".badge").first).to_have_text("Prevented")
    docs_screenshot(page, "coverage")


def test_the_api_docs_render_from_the_sites_own_assets(page, live_server, log_in, admin_user, docs_screenshot):
    blocked = []
    page.on(
        "console", lambda message: blocked.append(message.text) if "Content Security Policy" in message.text else None
    )
    log_in(admin_user.username, PASSWORD)

    page.goto(f"{live_server.url}/api/v1/docs/")

    expect(page.get_by_text("/api/v1/executions/").first).to_be_visible(timeout=15_000)
    assert not [text for text in blocked if "script" in text.lower()]
    docs_screenshot(page, "api-docs")
