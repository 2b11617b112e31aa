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
from tests.factories import make_actor, make_integration, simulator_integration, three_flavours
from tests.test_alert_store import defender_alert

pytestmark = pytest.mark.browser

SEVERITY_RANKS = {"High": 4, "Medium": 3, "Low": 2, "Informational": 1, "Unspecified": 0}


def add_actor(page, live_server, name, hostname, alternate=""):
    page.goto(f"{live_server.url}/actors/")
    page.get_by_role("link", name="Add Actor").click()
    # Required fields carry a "*" in their label.
    page.get_by_label("Name*", exact=True).fill(name)
    page.get_by_label("Hostname*", exact=True).fill(hostname)
    page.get_by_label("Alternate hostname").fill(alternate)
    page.get_by_role("button", name="Submit").click()
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
    expect(page.locator("#alert-count")).to_contain_text(f"of {stored} shown")
    expect(page.locator("#alerts-window")).to_contain_text(f"{stored} stored alerts in the window last asked")
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

    expect(page.get_by_label("From", exact=True)).to_be_hidden()
    page.get_by_label("Custom range").check()
    page.get_by_label("From", exact=True).fill(f"{yesterday}T10:00")
    page.get_by_label("Until", exact=True).fill(f"{yesterday}T09:00")
    page.get_by_role("button", name="Get alerts").click()

    expect(page.get_by_text("The window must end after it starts")).to_be_visible()
    expect(page.get_by_label("From", exact=True)).to_have_value(f"{yesterday}T10:00")
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


def status_of(page, integration_name):
    return page.locator(".fetch-status").filter(has_text=integration_name)


def ids_in_window(actor, integration, since, until):
    """The stored alerts with any of their times in since..until, counted here without the page's own filter."""
    moments = Alert.objects.filter(actor=actor, integrations=integration).values_list(
        "alert_id", "first_event", "created", "last_event"
    )
    return {
        alert_id
        for alert_id, *times in moments
        if any(t and t <= until for t in times) and any(t and t >= since for t in times)
    }


def test_the_alerts_table_shows_the_window_just_asked_and_can_be_narrowed_by_time(
    page, live_server, log_in, admin_user, simulator
):
    integration = simulator_integration(simulator, name="Defender (simulator)")
    actor = make_actor(hostname="ws-fin-07")
    log_in(admin_user.username, PASSWORD)
    page.goto(f"{live_server.url}/actors/{actor.pk}/")

    # A wide Get alerts first, then the week: the month's older alerts stay stored but leave the table.
    get_alerts(page, "Last 30 days")
    expect(page.locator("#alerts-table tbody tr").first).to_be_visible(timeout=30_000)
    stored = Alert.objects.filter(actor=actor).count()
    asked_first = AlertFetch.objects.get(actor=actor).asked_at
    before = status_of(page, "Defender (simulator)").inner_text()
    get_alerts(page, "Last 7 days")
    expect(status_of(page, "Defender (simulator)")).not_to_have_text(before, timeout=30_000)

    # The line above the table counts what the table shows, and says what it leaves out.
    window_line = page.locator("#alerts-window")
    expect(window_line).to_contain_text("stored alerts in the window last asked")
    shown = page.locator("#alerts-table tbody tr")
    in_table = int(re.match(r"(\d+) stored alerts", window_line.inner_text()).group(1))
    expect(shown).to_have_count(in_table)
    assert 0 < in_table < stored
    outside = stored - in_table
    expect(window_line).to_contain_text(f"{outside} more stored alert{'s are' if outside > 1 else ' is'} outside")
    expect(window_line).to_contain_text("(± 5 min clock-skew tolerance)")
    status = status_of(page, "Defender (simulator)")
    expect(status).to_contain_text(f"{in_table} stored alerts on ws-fin-07 in that window.")

    # They are the alerts of the week asked, widened by the tolerance only, and the window shown ends now.
    fetch = AlertFetch.objects.get(actor=actor)
    assert fetch.asked_at > asked_first and fetch.until - fetch.since == timedelta(days=7)
    assert abs(fetch.until - timezone.now()) < timedelta(minutes=2)
    assert in_table == len(ids_in_window(actor, integration, *fetch.searched))
    expect(status).to_contain_text("(± 5 min clock-skew tolerance)")
    until = status.locator("time").nth(2)
    assert datetime.fromisoformat(until.get_attribute("datetime")) == fetch.until
    page.wait_for_url(re.compile(rf"/actors/{actor.pk}/$"))

    # Narrow it: the last hour.
    expect(page.get_by_label("Active from")).to_be_hidden()
    page.get_by_label("Time", exact=True).select_option(label="Last hour")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"period=1h"))
    now = timezone.now()
    in_hour = ids_in_window(actor, integration, now - timedelta(hours=1), now)
    expect(shown).to_have_count(len(in_hour)) if in_hour else expect(page.locator("#alerts-empty")).to_be_visible()
    expect(window_line).to_contain_text(f"{len(in_hour)} stored alert")
    expect(window_line).to_contain_text("active in the last hour")

    # A custom range, typed in the viewer's time zone: the day before yesterday to yesterday.
    page.get_by_label("Time", exact=True).select_option(label="Custom range")
    start, end = now - timedelta(days=3), now - timedelta(days=1)
    page.get_by_label("Active from").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Active until").fill(end.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"period=custom"))
    in_range = ids_in_window(actor, integration, start.replace(second=0), end.replace(second=0))
    expect(window_line).to_contain_text(f"{len(in_range)} stored alert")
    assert page.locator("#alerts-table tbody tr").count() == len(in_range)

    # And everything stored.
    window_line.get_by_role("link", name="Show all stored alerts").click()
    page.wait_for_url(re.compile(r"period=all"))
    expect(shown).to_have_count(stored)
    expect(window_line).to_contain_text(f"All {stored} stored alerts")


LONG_TITLE = (
    "Suspicious sequence of exploration activities followed by credential access through LSASS memory reading "
    "and lateral movement using remote service creation on a privileged host"
)


def actor_with_many_long_alerts():
    """60 alerts with long titles, many techniques and a long machine name, from two integrations that were asked."""
    actor = make_actor(name="Finance workstation with a long name", alternate_hostname="finance-ws-07-renamed-2024")
    now = timezone.now()
    for number, name in enumerate(["Defender for Endpoint EU production tenant", "Graph security EU production"]):
        integration = make_integration(name=name, host=f"eu{number}.api.security.microsoft.com")
        alerts = [
            defender_alert(
                f"da638{number}{index:05}_-1234567890",
                title=f"{LONG_TITLE} ({index})",
                severity="Informational",
                status="InProgress",
                category="SuspiciousActivity",
                detection_source="CustomerTI",
                machine_name="finance-workstation-07.emea.corp.contoso-holdings.com",
                matched_name="finance-ws-07-renamed-2024",
                mitre_techniques=("T1059.001", "T1105", "T1003.001", "T1021.002", "T1570"),
                created=now - timedelta(minutes=index),
                first_event=now - timedelta(minutes=index + 5),
                last_event=now - timedelta(minutes=index + 1),
            )
            for index in range(30)
        ]
        alert_store.store_alerts(actor, integration, alerts)
        AlertFetch.objects.create(
            actor=actor,
            integration=integration,
            asked_at=now,
            since=now - timedelta(days=1),
            until=now,
            ok=True,
            tried_names=actor.hostnames(),
        )
    return actor


def page_scrolls_sideways(page):
    return page.evaluate("document.documentElement.scrollWidth > window.innerWidth")


def inside_viewport(page, locator):
    box = locator.bounding_box()
    width = page.evaluate("window.innerWidth")
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def log_in_at(browser, live_server, user, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
    return context, page


def test_the_actor_page_with_many_long_alerts_fits_a_laptop_screen(browser, live_server, admin_user):
    actor = actor_with_many_long_alerts()
    make_integration(name="Defender US", host="us.api.security.microsoft.com")
    context, page = log_in_at(browser, live_server, admin_user, 1366)
    try:
        page.goto(f"{live_server.url}/actors/{actor.pk}/")
        expect(page.locator("#alerts-table tbody tr")).to_have_count(50)

        assert not page_scrolls_sideways(page)
        # The whole table fits: no scrolling inside its container either, every column on screen.
        table_fits = "(t) => t.scrollWidth <= t.parentElement.clientWidth"
        assert page.locator("#alerts-table").evaluate(table_fits)
        # The last column, which lists every integration that returned the alert (not a sort link: it is not sortable).
        assert inside_viewport(page, page.locator("#alerts-table thead th", has_text="Integration"))
        first_row = page.locator("#alerts-table tbody tr").first
        assert inside_viewport(page, first_row.get_by_role("link", name="Open in Defender"))

        # What has no column opens under the title, with the keyboard too.
        title = first_row.locator("summary")
        expect(first_row.get_by_text("CustomerTI")).to_be_hidden()
        title.focus()
        page.keyboard.press("Enter")
        expect(first_row.get_by_text("CustomerTI")).to_be_visible()
        expect(first_row.get_by_text("T1021.002")).to_be_visible()
        assert not page_scrolls_sideways(page)

        # Chosen as columns, they scroll inside the table's container, never the page.
        page.get_by_label("Detection source", exact=True).check()
        page.get_by_label("MITRE techniques", exact=True).check()
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(re.compile(r"columns=mitre_techniques"))
        expect(page.locator("#alerts-table thead")).to_contain_text("Detection source")
        assert not page_scrolls_sideways(page)
    finally:
        context.close()


@pytest.mark.parametrize("width", [390, 1366])
def test_the_actor_page_and_the_actors_list_never_scroll_sideways(browser, live_server, admin_user, width):
    actor = actor_with_many_long_alerts()
    for number in range(12):
        make_actor(name=f"Build agent {number} in the long-named lab", hostname=f"build-agent-{number:02}.lab.contoso")
    context, page = log_in_at(browser, live_server, admin_user, width)
    try:
        page.goto(f"{live_server.url}/actors/{actor.pk}/")
        expect(page.locator("#alerts-table tbody tr")).to_have_count(50)
        assert not page_scrolls_sideways(page)
        # The page's own actions and each row's link stay reachable (a wide table scrolls inside its container).
        assert inside_viewport(page, page.get_by_role("link", name="Edit"))
        assert inside_viewport(page, page.get_by_role("link", name="Delete"))
        assert inside_viewport(page, page.get_by_role("button", name="Get alerts"))
        assert inside_viewport(page, page.get_by_role("button", name="Filter"))
        link = page.locator("#alerts-table tbody tr").first.get_by_role("link", name="Open in Defender")
        link.scroll_into_view_if_needed()
        assert inside_viewport(page, link)
        assert not page_scrolls_sideways(page)

        page.goto(f"{live_server.url}/actors/")
        expect(page.get_by_role("link", name="Build agent 11 in the long-named lab")).to_be_attached()
        assert not page_scrolls_sideways(page)
        assert inside_viewport(page, page.get_by_role("link", name="Add Actor"))
        row_link = page.get_by_role("link", name="Build agent 0 in the long-named lab")
        row_link.scroll_into_view_if_needed()
        assert inside_viewport(page, row_link)
    finally:
        context.close()


def test_an_alert_three_integrations_of_one_tenant_returned_is_one_row_that_opens_on_its_evidence(
    page, live_server, log_in, admin_user, simulator
):
    hostname = simulator.actor_hostnames()[0][0]
    three_flavours(simulator)
    log_in(admin_user.username, PASSWORD)
    add_actor(page, live_server, "Finance workstation", hostname)
    for name in ("Defender API", "Graph", "SIEM"):
        page.get_by_label(name, exact=True).check()
    get_alerts(page)
    expect(page.locator("#alerts-table tbody tr").first).to_be_visible(timeout=30_000)

    stored = Alert.objects.filter(actor__name="Finance workstation")
    ids = [row.strip() for row in page.locator("#alerts-table tbody details dd:last-of-type").all_text_contents()]
    assert len(ids) == len(set(ids)) == stored.count() > 0
    named = table_column(page, "Integration")
    assert "Defender API\nGraph\nSIEM" in named

    row = page.locator("#alerts-table tbody tr").nth(named.index("Defender API\nGraph\nSIEM"))
    row.locator("summary").click()
    row.get_by_role("link", name="Evidence, every field and the raw JSON").click()
    expect(page.locator("#alert-sources")).to_contain_text("Defender API")
    expect(page.locator("#alert-sources")).to_contain_text("SIEM")
    expect(page.locator("#alert-evidence")).to_contain_text("Detection status")
    expect(page.locator("#alert-raw")).to_contain_text('"id":')
