"""An engineer adds an actor, gets its alerts from the simulator, sorts them and exports what the table shows."""

import csv
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from defender import alert_store
from defender.models import Alert, AlertFetch
from tests.conftest import PASSWORD
from tests.factories import make_actor, make_integration, simulator_integration
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.browser

SEVERITY_RANKS = {"High": 4, "Medium": 3, "Low": 2, "Informational": 1, "Unspecified": 0}


def add_actor(page, live_server, name, hostname, alternate=""):
    page.goto(f"{live_server.url}/actors/")
    page.get_by_role("link", name="Add actor").click()
    # Required fields carry a "*" in their label.
    page.get_by_label("Name*", exact=True).fill(name)
    page.get_by_label("Hostname*", exact=True).fill(hostname)
    page.get_by_label("Alternate hostname").fill(alternate)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()


def get_alerts(page, window="Last 30 days"):
    page.get_by_label(window).check()
    page.get_by_role("button", name="Get alerts").click()


def table_column(page, header):
    """The text of one column of the alerts table, top to bottom."""
    headers = page.locator("#alerts-table thead th").all_inner_texts()
    index = [text.strip() for text in headers].index(header) + 1
    return [text.strip() for text in page.locator(f"#alerts-table tbody td:nth-child({index})").all_inner_texts()]


def test_an_actor_known_by_its_short_name_gets_its_alerts_sorted_and_exported(
    page, live_server, log_in, admin_user, clean_simulator, docs_screenshot, tmp_path
):
    hostname = next(name for name, alternate in clean_simulator.actor_hostnames() if "." not in name and not alternate)
    simulator_integration(clean_simulator, name="Defender (simulator)")
    log_in(admin_user.username, PASSWORD)
    add_actor(page, live_server, "Finance workstation", hostname)

    # Slow answers, so the progress indicator and the disabled button can be seen while Defender is asked.
    clean_simulator.faults.set(delay=0.5)
    get_alerts(page)
    expect(page.get_by_role("button", name="Get alerts")).to_be_disabled()
    expect(page.get_by_text("Fetching alerts…")).to_be_visible()
    expect(page.locator("#alerts-table tbody tr").first).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Get alerts")).to_be_enabled()
    clean_simulator.faults.clear()

    stored = Alert.objects.filter(actor__name="Finance workstation").count()
    assert stored > 0
    expect(page.locator("#alert-count")).to_contain_text(f"of {stored} stored alert")
    assert all(name.lower().startswith(hostname) for name in table_column(page, "Machine"))
    created = page.locator("#alerts-table tbody time").first
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", created.get_attribute("title"))
    link = page.locator("#alerts-table tbody").get_by_role("link", name="Open in Defender").first
    assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener noreferrer")
    docs_screenshot(page, "actor-alerts")

    page.locator("#alerts-table thead").get_by_role("link", name="Severity").click()
    page.wait_for_url(re.compile(r"sort=severity"))
    ascending = [SEVERITY_RANKS[text] for text in table_column(page, "Severity")]
    assert ascending == sorted(ascending) and len(set(ascending)) > 1
    page.locator("#alerts-table thead").get_by_role("link", name="Severity").click()
    page.wait_for_url(re.compile(r"sort=-severity"))
    descending = [SEVERITY_RANKS[text] for text in table_column(page, "Severity")]
    assert descending == sorted(descending, reverse=True)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))

    assert download.suggested_filename == "finance-workstation-alerts.csv"
    assert len(rows) == stored
    shown = list(zip(table_column(page, "Severity"), table_column(page, "Title"), strict=True))
    assert [(row["Severity"], row["Title"]) for row in rows[: len(shown)]] == shown


def test_an_actor_known_only_by_its_alternate_hostname_gets_alerts(page, live_server, log_in, admin_user, simulator):
    hostname, alternate = next(pair for pair in simulator.actor_hostnames() if pair[1])
    simulator_integration(simulator, name="Defender (simulator)")
    log_in(admin_user.username, PASSWORD)
    add_actor(page, live_server, "Lobby kiosk", hostname, alternate)

    get_alerts(page)

    expect(page.locator("#alerts-table tbody tr").first).to_be_visible(timeout=30_000)
    machines = table_column(page, "Machine")
    assert machines and all(f"matched alternate hostname {alternate}" in machine for machine in machines)
    expect(page.get_by_role("status").filter(has_text="Defender (simulator)")).to_contain_text("Answered")


def test_a_wrong_custom_range_is_explained_without_asking_defender(page, live_server, log_in, admin_user, simulator):
    simulator_integration(simulator, name="Defender (simulator)")
    log_in(admin_user.username, PASSWORD)
    add_actor(page, live_server, "Finance workstation", "ws-fin-07")
    yesterday = (timezone.now() - timedelta(days=1)).date()

    expect(page.get_by_label("From")).to_be_hidden()
    page.get_by_label("Custom range").check()
    page.get_by_label("From").fill(f"{yesterday}T10:00")
    page.get_by_label("Until").fill(f"{yesterday}T09:00")
    page.get_by_role("button", name="Get alerts").click()

    expect(page.get_by_text("The window must end after it starts")).to_be_visible()
    expect(page.get_by_label("From")).to_have_value(f"{yesterday}T10:00")
    assert not AlertFetch.objects.exists()


def test_alert_times_show_in_the_viewers_time_zone_with_utc_on_hover(browser, live_server, admin_user):
    actor = make_actor()
    alert_store.store_alerts(
        actor, make_integration(), [defender_alert(created=datetime(2026, 5, 1, 12, 0, tzinfo=UTC))]
    )
    context = browser.new_context(timezone_id="Asia/Kolkata", locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill(admin_user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{live_server.url}/actors/{actor.pk}/")

        created = page.locator("#alerts-table tbody time").first
        expect(created).to_have_text(re.compile(r"^2026-05-01 17:30:00 "))
        expect(created).to_have_attribute("title", "2026-05-01T12:00:00Z")
    finally:
        context.close()
