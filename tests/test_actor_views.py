"""The Actors pages: the list, Add, Edit, Delete, and an actor's page with its Alerts section."""

import csv
import io
import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from defender import alert_store
from defender.models import Actor, Alert, AlertFetch, Integration, Job
from defender.operations import alerts as operations_alerts
from tests.factories import make_actor, make_integration, simulator_integration
from tests.test_alert_store import defender_alert

SEVERITIES = ["Informational", "Low", "Medium", "High"]
pytestmark = pytest.mark.django_db


def actor_url(actor, name="actor-detail"):
    return reverse(f"defender:{name}", args=[actor.pk])


def store(actor, count, integration=None, **fields):
    """``count`` stored alerts, one a minute back from 2026-05-01 12:00 UTC, severities in turn."""
    integration = integration or Integration.objects.first() or make_integration()
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    alerts = [
        defender_alert(
            f"da{integration.pk}-{number:05}",
            **{
                "severity": SEVERITIES[number % len(SEVERITIES)],
                "created": start - timedelta(minutes=number),
                **fields,
            },
        )
        for number in range(count)
    ]
    alert_store.store_alerts(actor, integration, alerts)
    return integration


def asked(actor, integration, since, until, skew=300, asked_at=None, **fields):
    """A Get alerts of ``integration`` for ``since`` to ``until`` as the page records it."""
    values = {"ok": True, "message": "Answered.", "tried_names": [actor.hostname]} | fields
    return AlertFetch.objects.create(
        actor=actor,
        integration=integration,
        asked_at=asked_at or until,
        since=since,
        until=until,
        clock_skew_seconds=skew,
        **values,
    )


def shown_ids(response):
    return [row.record.alert_id for row in response.context["table"].page.object_list]


def csv_rows(response):
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def actor_form(**fields):
    values = {"name": "Finance workstation", "hostname": "WS-Fin-07", "operating_system": "windows"}
    values.update(fields)
    return values


# The list, Add, Edit and Delete


def test_the_list_shows_each_actor_with_its_stored_alert_count(admin_client):
    actor = make_actor(alternate_hostname="fin-07-renamed", ip_address="10.0.0.7")
    store(actor, 3)

    response = admin_client.get(reverse("defender:actor-list"))

    content = response.content.decode()
    assert f'href="{actor_url(actor)}"' in content
    for text in ["ws-fin-07", "fin-07-renamed", "10.0.0.7", "Windows", "Add Actor"]:
        assert text in content
    assert response.context["table"].rows[0].get_cell("alert_count") == 3


def test_adding_an_actor_keeps_the_hostname_as_entered_and_opens_its_page(admin_client):
    response = admin_client.post(reverse("defender:actor-add"), actor_form(alternate_hostname="Fin07.Corp.Contoso.com"))

    actor = Actor.objects.get()
    assert response.status_code == 302 and response["Location"] == actor_url(actor)
    assert (actor.hostname, actor.alternate_hostname) == ("WS-Fin-07", "Fin07.Corp.Contoso.com")
    assert "Actor Finance workstation added." in admin_client.get(response["Location"]).content.decode()


def test_a_wrong_hostname_is_shown_next_to_the_field_with_the_input_kept(admin_client):
    response = admin_client.post(reverse("defender:actor-add"), actor_form(hostname="https://ws-fin-07/"))

    assert response.status_code == 200
    assert response.context["form"].errors["hostname"] == ["Enter the host name only, without http:// or https://."]
    content = response.content.decode()
    assert 'value="https://ws-fin-07/"' in content and "is-invalid" in content
    assert not Actor.objects.exists()


def test_a_hostname_another_actor_has_in_any_case_is_refused(admin_client):
    make_actor(name="Lobby kiosk", hostname="kiosk-01", alternate_hostname="lobby.corp.contoso.com")

    response = admin_client.post(
        reverse("defender:actor-add"), actor_form(hostname="KIOSK-01", alternate_hostname="Lobby.Corp.Contoso.com")
    )

    errors = response.context["form"].errors
    assert errors["hostname"] == ["The actor Lobby kiosk already has the name KIOSK-01."]
    assert errors["alternate_hostname"] == ["The actor Lobby kiosk already has the name Lobby.Corp.Contoso.com."]


def test_an_alternate_hostname_equal_to_the_hostname_is_refused(admin_client):
    response = admin_client.post(reverse("defender:actor-add"), actor_form(alternate_hostname="ws-fin-07"))
    assert response.context["form"].errors["alternate_hostname"] == [
        "The alternate hostname is the hostname again: leave it empty."
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "", "hostname": ""},
        {"hostname": "ws fin 07"},
        {"hostname": "x" * 300},
        {"hostname": "ws-fin-07:8080"},
        {"name": "n" * 500, "hostname": "-bad-"},
        {"ip_address": "10.0.0.999"},
        {"ip_address": "not an address"},
        {"operating_system": "beos"},
        {"name": "nul\x00byte", "hostname": "ws\x00fin"},
        {"hostname": "ünïcødé.example"},
    ],
)
def test_nothing_typed_into_the_actor_form_gives_a_server_error(admin_client, fields):
    response = admin_client.post(reverse("defender:actor-add"), actor_form(**fields))
    assert response.status_code == 200
    assert response.context["form"].errors


def test_editing_an_actor_saves_it_and_keeps_its_own_hostname_allowed(admin_client):
    actor = make_actor()

    response = admin_client.post(
        actor_url(actor, "actor-edit"), actor_form(hostname="ws-fin-07", ip_address="10.1.2.3")
    )

    assert response.status_code == 302
    actor.refresh_from_db()
    assert str(actor.ip_address) == "10.1.2.3"


def test_the_delete_page_says_how_many_stored_alerts_go_with_the_actor(admin_client):
    actor = make_actor()
    store(actor, 3)

    content = admin_client.get(actor_url(actor, "actor-delete")).content.decode()

    assert "Delete actor Finance workstation?" in content
    assert "Its <strong>3 stored alerts</strong> will be deleted with it." in content


def test_deleting_an_actor_deletes_its_stored_alerts(admin_client):
    actor = make_actor()
    integration = store(actor, 3)
    AlertFetch.objects.create(
        actor=actor,
        integration=integration,
        asked_at=timezone.now(),
        since=timezone.now(),
        until=timezone.now(),
        ok=True,
    )

    response = admin_client.post(actor_url(actor, "actor-delete"))

    assert response.status_code == 302 and response["Location"] == reverse("defender:actor-list")
    assert not Actor.objects.exists() and not Alert.objects.exists() and not AlertFetch.objects.exists()


# Who may do what


def test_a_viewer_sees_the_alerts_but_no_get_alerts_edit_or_delete(viewer_client):
    actor = make_actor()
    store(actor, 2)

    content = viewer_client.get(actor_url(actor)).content.decode()

    assert "Suspicious PowerShell command line" in content and "Export CSV" in content
    for text in ["Get alerts", actor_url(actor, "actor-edit"), actor_url(actor, "actor-delete"), "Add Actor"]:
        assert text not in content
    assert "Add Actor" not in viewer_client.get(reverse("defender:actor-list")).content.decode()


def test_a_viewer_is_refused_get_alerts_edit_and_delete(viewer_client):
    actor = make_actor()
    integration = make_integration()
    refused = [
        viewer_client.post(actor_url(actor, "actor-get-alerts"), {"integrations": [integration.pk], "window": "24h"}),
        viewer_client.post(actor_url(actor, "actor-edit"), actor_form()),
        viewer_client.post(actor_url(actor, "actor-delete")),
        viewer_client.post(reverse("defender:actor-add"), actor_form(name="Another")),
    ]
    assert [response.status_code for response in refused] == [403] * 4
    assert Actor.objects.count() == 1 and not AlertFetch.objects.exists()


def test_a_viewer_can_export_the_csv(viewer_client):
    actor = make_actor()
    store(actor, 2)
    assert len(csv_rows(viewer_client.get(actor_url(actor, "actor-alerts-csv")))) == 2


# Get alerts


def test_the_get_alerts_form_asks_every_enabled_integration_by_default(admin_client):
    make_integration(name="Defender EU")
    make_integration(name="Defender US")
    make_integration(name="Retired", enabled=False)

    response = admin_client.get(actor_url(make_actor()))

    form = response.context["fetch_form"]
    assert [(name, ticked) for _, name, ticked in form.integration_options()] == [
        ("Defender EU", True),
        ("Defender US", True),
    ]
    assert form["window"].value() == "24h"
    content = response.content.decode()
    assert "Get alerts</button>" in content and "Retired" not in content
    # While the request runs: a spinner that says what is happening, and a button that cannot be pressed twice.
    assert 'hx-indicator="#fetch-progress"' in content and 'hx-disabled-elt="find button[type=submit]"' in content
    assert "Fetching alerts…" in content


def test_without_an_enabled_integration_the_page_says_where_to_add_one(admin_client):
    make_integration(name="Retired", enabled=False)

    content = admin_client.get(actor_url(make_actor())).content.decode()

    assert "No enabled integration to ask: add one under" in content
    assert "Get alerts</button>" not in content and "Retired" not in content


def test_get_alerts_stores_the_alerts_and_redirects_back_to_the_actor_page(admin_client, simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    integration = simulator_integration(simulator)

    # The table was on page 2 of a week, filtered to High: the answer shows the window just asked, still High.
    response = admin_client.post(
        actor_url(actor, "actor-get-alerts") + "?severity=High&period=7d&page=2",
        {"integrations": [integration.pk], "window": "30d"},
    )

    assert response.status_code == 302 and response["Location"] == actor_url(actor) + "?severity=High"
    fetch = AlertFetch.objects.get(actor=actor)
    stored = Alert.objects.filter(actor=actor).count()
    assert fetch.ok and fetch.alert_count == stored > 0
    page = admin_client.get(response["Location"])
    assert page.context["window"].period == "asked"
    assert all(row.record.severity == "High" for row in page.context["table"].page.object_list)
    status = page.content.decode().split('class="fetch-found">')[1]
    assert status.startswith(f"{stored} stored alerts on {actor.hostname} in that window.")


def test_get_alerts_with_htmx_answers_the_alerts_section_only(admin_client, simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    integration = simulator_integration(simulator)

    response = admin_client.post(
        actor_url(actor, "actor-get-alerts") + "?sort=title&period=1h",
        {"integrations": [integration.pk], "window": "30d"},
        headers={"HX-Request": "true"},
        follow=True,
    )

    content = response.content.decode()
    # htmx follows the redirect to the actor's page, which answers the section and puts its address in the bar.
    assert response.redirect_chain == [(actor_url(actor) + "?sort=title", 302)]
    assert response.status_code == 200 and response["HX-Replace-Url"] == actor_url(actor) + "?sort=title"
    assert content.lstrip().startswith('<section id="alerts"') and "<html" not in content
    assert 'name="integrations"' in content and "Fetching alerts…" in content
    assert Alert.objects.filter(actor=actor).count() == response.context["table"].paginator.count > 0


def test_a_failing_integration_shows_its_error_above_the_alerts_of_the_others(admin_client, simulator):
    actor = make_actor(hostname=simulator.actor_hostnames()[0][0])
    working = simulator_integration(simulator, name="Simulator")
    broken = simulator_integration(simulator, name="Wrong secret", client_secret="not-the-secret")

    response = admin_client.post(
        actor_url(actor, "actor-get-alerts"), {"integrations": [working.pk, broken.pk], "window": "30d"}, follow=True
    )

    content = response.content.decode()
    failed = AlertFetch.objects.get(integration=broken)
    assert not failed.ok
    assert escape(failed.message) in content and "alert-danger" in content
    assert content.index(escape(failed.message)) < content.index('id="alerts-table"')
    assert response.context["table"].paginator.count == Alert.objects.filter(integrations=working).count() > 0


def test_an_empty_result_names_the_names_and_the_window_asked(admin_client, simulator):
    actor = make_actor(hostname="no-such-host", alternate_hostname="no-such-host-2")
    integration = simulator_integration(simulator)

    response = admin_client.post(
        actor_url(actor, "actor-get-alerts"), {"integrations": [integration.pk], "window": "1h"}, follow=True
    )

    fetch = AlertFetch.objects.get()
    content = response.content.decode()
    status = content.split('class="alert alert-light border py-2 fetch-status"')[1].split("</div>")[0]
    assert "No machine named no-such-host or no-such-host-2 is known to Defender" in status
    # The window as asked, ending now (not five minutes from now), and the tolerance said once.
    assert abs(fetch.until - timezone.now()) < timedelta(minutes=1)
    assert fetch.until - fetch.since == timedelta(hours=1)
    assert f'for <time datetime="{fetch.since:%Y-%m-%dT%H:%M:%S}' in status
    assert f'to <time datetime="{fetch.until:%Y-%m-%dT%H:%M:%S}' in status
    assert status.count("clock-skew tolerance") == 1 and "(± 5 min clock-skew tolerance)" in status
    assert "No alerts stored for this actor: what each integration answered is above." in content


def test_the_page_says_when_each_integration_was_last_asked_and_for_which_window(admin_client):
    actor = make_actor()
    integration = make_integration(name="Defender EU")
    asked(
        actor,
        integration,
        datetime(2026, 5, 1, 9, 30, tzinfo=UTC),
        datetime(2026, 5, 2, 9, 30, tzinfo=UTC),
        asked_at=datetime(2026, 5, 2, 9, 30, 2, tzinfo=UTC),
        message="Defender knows ws-fin-07.corp.contoso.com but raised no alerts on it in that window.",
    )

    content = admin_client.get(actor_url(actor)).content.decode()

    def moment(iso, date, time):
        return (
            f'<time datetime="{iso}" title="{iso}"><span class="text-nowrap">{date}</span> '
            f'<span class="text-nowrap">{time} UTC</span></time>'
        )

    asked_at = moment("2026-05-02T09:30:02Z", "2026-05-02", "09:30:02")
    since = moment("2026-05-01T09:30:00Z", "2026-05-01", "09:30:00")
    until = moment("2026-05-02T09:30:00Z", "2026-05-02", "09:30:00")
    assert f"asked {asked_at} for {since} to {until} (± 5 min clock-skew tolerance)" in content
    assert "Defender knows ws-fin-07.corp.contoso.com but raised no alerts on it in that window." in content


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"integrations": []}, "integrations", "Choose at least one integration to ask."),
        ({"window_from": ""}, "window_from", "Enter when the window starts."),
        ({"window_from": "2026-13-45T99:00"}, "window_from", "Enter a valid date/time."),
        (
            {"window_from": "PAST-1d", "window_until": "PAST-2d"},
            "window_until",
            "The window must end after it starts: choose an Until later than From.",
        ),
        ({"window_from": "FUTURE+1d"}, "window_from", "The window starts in the future: choose a start before now."),
        (
            {"window_from": "PAST-1d", "window_until": "FUTURE+1h"},
            "window_until",
            "The window ends in the future: Until may be at most 5 minutes after now (the clock-skew tolerance). "
            "Leave it empty for now.",
        ),
        (
            {"window_from": "PAST-200d"},
            "window_from",
            "The window can start at most 180 days ago: Defender keeps no older data.",
        ),
        ({"window": "forever"}, "window", "Select a valid choice. forever is not one of the available choices."),
    ],
)
def test_a_wrong_window_is_explained_next_to_its_field_and_nothing_is_asked(admin_client, fields, field, message):
    actor = make_actor()
    integration = make_integration()
    now = timezone.now().replace(tzinfo=None)
    moments = {
        "FUTURE+1d": now + timedelta(days=1),
        "FUTURE+1h": now + timedelta(hours=1),
        "PAST-1d": now - timedelta(days=1),
        "PAST-2d": now - timedelta(days=2),
        "PAST-200d": now - timedelta(days=200),
    }
    data = {"integrations": [integration.pk], "window": "custom", "window_from": "PAST-1d", "time_zone": "UTC"} | fields
    data = {key: moments.get(value, value) if key.startswith("window_") else value for key, value in data.items()}
    data = {
        key: value.strftime("%Y-%m-%dT%H:%M") if isinstance(value, datetime) else value for key, value in data.items()
    }

    response = admin_client.post(actor_url(actor, "actor-get-alerts"), data)

    assert response.status_code == 200
    assert response.context["fetch_form"].errors[field] == [message]
    assert escape(message) in response.content.decode()
    assert not AlertFetch.objects.exists()


def test_a_custom_range_is_read_in_the_browsers_time_zone(admin_client, monkeypatch):
    actor = make_actor()
    integration = make_integration()
    day = (timezone.now() - timedelta(days=10)).date()

    admin_client.post(
        actor_url(actor, "actor-get-alerts"),
        {
            "integrations": [integration.pk],
            "window": "custom",
            "window_from": f"{day}T10:00",
            "window_until": f"{day}T12:30",
            "time_zone": "Asia/Kolkata",
        },
    )

    assert asked_windows() == [(datetime.combine(day, time(4, 30), UTC), datetime.combine(day, time(7, 0), UTC))]


def test_an_unknown_time_zone_falls_back_to_the_servers(admin_client, monkeypatch):
    integration = make_integration()
    day = (timezone.now() - timedelta(days=10)).date()
    data = {
        "integrations": [integration.pk],
        "window": "custom",
        "window_from": f"{day}T10:00",
        "time_zone": "Mars/Base",
    }

    admin_client.post(actor_url(make_actor(), "actor-get-alerts"), data)

    assert [since for since, _ in asked_windows()] == [datetime.combine(day, time(10, 0), UTC)]


def asked_windows():
    """The windows Get alerts asked for, as its jobs hold them."""
    return [
        (datetime.fromisoformat(job.parameters["since"]), datetime.fromisoformat(job.parameters["until"]))
        for job in Job.objects.order_by("pk")
    ]


def test_get_alerts_only_answers_post(admin_client):
    assert admin_client.get(actor_url(make_actor(), "actor-get-alerts")).status_code == 405


# The alerts table


def test_the_table_shows_every_column_of_an_alert(admin_client):
    actor = make_actor(alternate_hostname="fin-07-renamed")
    integration = store(actor, 1, title="Two techniques", severity="High", mitre_techniques=("T1059.001", "T1105"))
    store(actor, 1, integration=make_integration(name="Defender US"), matched_name="fin-07-renamed")

    content = admin_client.get(actor_url(actor)).content.decode()

    # The date and the time may go on two lines, but neither breaks inside.
    created = (
        '<time datetime="2026-05-01T12:00:00Z" title="2026-05-01T12:00:00Z"><span class="text-nowrap">2026-05-01'
        '</span> <span class="text-nowrap">12:00:00 UTC</span></time>'
    )
    assert created in content
    assert '<span class="badge text-bg-danger">High</span>' in content
    headers = [column.header for column in admin_client.get(actor_url(actor)).context["table"].columns]
    assert headers == ["Created", "Severity", "Title", "Status", "Machine", "Defender"]
    # What has no column opens under the title.
    facts = content.split('<details class="alert-more"><summary>Two techniques</summary>')[1]
    facts = facts.split("</details>")[0]
    for text in ["Execution", "WindowsDefenderAtp", "T1059.001", "T1105", f"da{integration.pk}-00000"]:
        assert text in facts
    assert "<dt>Activity</dt><dd>" in facts and 'datetime="2026-05-01T11:55:00Z"' in facts
    # A host name wraps after its dots only.
    machine = (
        '<span class="text-nowrap">ws-fin-07.</span><wbr><span class="text-nowrap">corp.</span><wbr>'
        '<span class="text-nowrap">contoso.</span><wbr><span class="text-nowrap">com</span>'
    )
    assert machine in content
    assert 'matched hostname <span class="text-nowrap">ws-fin-07</span>' in content
    assert 'matched alternate hostname <span class="text-nowrap">fin-07-renamed</span>' in content
    portal = f"https://security.microsoft.com/alerts/da{integration.pk}-00000"
    link = f'href="{portal}" target="_blank" rel="noopener noreferrer"'
    assert link in content


@pytest.mark.parametrize(
    ("severity", "badge"),
    [
        ("High", "text-bg-danger"),
        ("Medium", "text-bg-warning"),
        ("Low", "text-bg-info"),
        ("Informational", "text-bg-secondary"),
    ],
)
def test_each_severity_has_its_colour(admin_client, severity, badge):
    actor = make_actor()
    store(actor, 1, severity=severity)
    assert f'<span class="badge {badge}">{severity}</span>' in admin_client.get(actor_url(actor)).content.decode()


def test_sorting_by_severity_sorts_by_rank_not_by_name(admin_client):
    actor = make_actor()
    store(actor, 8)

    descending = admin_client.get(actor_url(actor) + "?sort=-severity").context["table"]
    ascending = admin_client.get(actor_url(actor) + "?sort=severity").context["table"]

    assert [row.record.severity for row in descending.page.object_list] == ["High"] * 2 + ["Medium"] * 2 + [
        "Low"
    ] * 2 + ["Informational"] * 2
    assert [row.record.severity for row in ascending.page.object_list][::2] == SEVERITIES


def test_the_table_shows_fifty_alerts_a_page(admin_client):
    actor = make_actor()
    store(actor, 120)

    first = admin_client.get(actor_url(actor)).context["table"]
    last = admin_client.get(actor_url(actor) + "?page=3").context["table"]

    assert len(first.page.object_list) == 50 and first.paginator.num_pages == 3
    assert len(last.page.object_list) == 20
    assert admin_client.get(actor_url(actor) + "?page=abc").status_code == 200


def test_severity_and_status_filter_the_table(admin_client):
    actor = make_actor()
    integration = store(actor, 8)
    Alert.objects.filter(integrations=integration, severity="High").update(status="Resolved")

    table = admin_client.get(actor_url(actor) + "?severity=High&severity=Low&status=New").context["table"]

    assert {row.record.severity for row in table.page.object_list} == {"Low"}
    assert admin_client.get(actor_url(actor) + "?severity=Bogus&sort=nothing").status_code == 200


def test_the_csv_export_holds_exactly_the_filtered_rows_of_every_page_in_the_table_order(admin_client):
    actor = make_actor()
    store(actor, 130)
    store(make_actor(name="Other", hostname="other-host"), 5, integration=make_integration(name="Defender US"))
    query = "?severity=High&severity=Medium&sort=-severity&page=2"

    response = admin_client.get(actor_url(actor, "actor-alerts-csv") + query)
    table = admin_client.get(actor_url(actor) + "?severity=High&severity=Medium&sort=-severity").context["table"]

    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="finance-workstation-alerts.csv"'
    rows = csv_rows(response)
    expected = Alert.objects.filter(actor=actor, severity__in=["High", "Medium"])
    assert len(rows) == expected.count() == 64
    assert {row["Alert ID"] for row in rows} == set(expected.values_list("alert_id", flat=True))
    assert [row["Alert ID"] for row in rows[:50]] == [row.record.alert_id for row in table.page.object_list]
    assert rows[0]["Severity"] == "High" and rows[-1]["Severity"] == "Medium"


def test_the_csv_export_neutralises_cells_a_spreadsheet_would_run(admin_client):
    actor = make_actor()
    store(actor, 1, title='=HYPERLINK("http://evil.example","x")', category="+cmd", detection_source="@SUM(1)")

    [row] = csv_rows(admin_client.get(actor_url(actor, "actor-alerts-csv")))

    assert row["Title"] == '\'=HYPERLINK("http://evil.example","x")'
    assert (row["Category"], row["Detection source"]) == ("'+cmd", "'@SUM(1)")


def test_the_export_link_carries_the_filter_and_sort_but_not_the_page(admin_client):
    actor = make_actor()
    store(actor, 60)
    content = admin_client.get(actor_url(actor) + "?severity=High&sort=title&page=2").content.decode()
    assert f'href="{actor_url(actor, "actor-alerts-csv")}?severity=High&amp;sort=title"' in content


def test_the_actor_page_with_ten_thousand_alerts_takes_a_fixed_number_of_queries(
    admin_client, django_assert_max_num_queries
):
    actor = make_actor()
    integrations = [make_integration(name=f"Defender {number}") for number in range(3)]
    for integration in integrations:
        store(actor, 10_000 // len(integrations) + 1, integration=integration)
        # Asked for the week up to the newest alert: the table opens on it, with the older alerts outside.
        asked(actor, integration, datetime(2026, 4, 24, 12, 0, tzinfo=UTC), datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    assert Alert.objects.count() >= 10_000

    # Twelve for the page and its table (one of them counts the window and each status line, one reads the page's
    # keys by the sort's index, one its rows, one the integrations that returned them), one for the Get alerts still
    # waiting on remote nodes, one for when each integration last synced, one for its latest executions with their
    # outcomes counted.
    with django_assert_max_num_queries(15):
        response = admin_client.get(actor_url(actor) + "?sort=-severity")

    assert len(response.context["table"].page.object_list) == 50
    assert response.context["counts"].outside == 0
    for period in ("1h", "all", "custom&since=2026-04-30T00:00&until=2026-05-01T00:00"):
        with django_assert_max_num_queries(15):
            admin_client.get(actor_url(actor) + f"?sort=-severity&severity=High&period={period}")
    with django_assert_max_num_queries(9):
        csv_response = admin_client.get(actor_url(actor, "actor-alerts-csv"))
        assert len(csv_rows(csv_response)) == Alert.objects.count()


def test_the_time_window_starts_at_the_integrations_lookback_window(admin_client):
    actor = make_actor()
    make_integration(name="Defender week", lookback_hours=24 * 7)
    make_integration(name="Defender day", lookback_hours=24)
    body = admin_client.get(actor_url(actor)).content.decode()
    assert re.search(r'value="7d"[^>]*checked', body)


# The time window of the table


NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def raised_at(moment):
    """An alert's times: raised at ``moment`` on activity of the five minutes before."""
    return {
        "created": moment,
        "first_event": moment - timedelta(minutes=5),
        "last_event": moment - timedelta(minutes=1),
    }


def test_the_table_opens_on_the_window_last_asked_and_says_how_many_stored_alerts_are_outside_it(admin_client):
    actor = make_actor()
    integration = make_integration()
    # One alert left by an earlier, wider Get alerts, and four in the window just asked.
    store(actor, 1, integration=integration, **raised_at(NOON - timedelta(days=9)))
    for number in range(4):
        alert_store.store_alerts(
            actor, integration, [defender_alert(f"new-{number}", **raised_at(NOON - timedelta(hours=number)))]
        )
    asked(actor, integration, NOON - timedelta(days=1), NOON)

    response = admin_client.get(actor_url(actor))

    assert sorted(shown_ids(response)) == ["new-0", "new-1", "new-2", "new-3"]
    content = response.content.decode()
    line = content.split('id="alerts-window">')[1].split("</p>")[0]
    assert "<strong>4 stored alerts</strong>" in line and "in the window last asked" in line
    assert "(± 5 min clock-skew tolerance)" in line
    assert "1 more stored alert is outside this window" in line
    assert '<a href="?period=all">Show all stored alerts</a>' in line
    # The status line counts what the table shows.
    assert f"4 stored alerts on {actor.hostname} in that window." in content
    assert len(shown_ids(admin_client.get(actor_url(actor) + "?period=all"))) == 5


def test_an_alert_is_in_a_window_when_its_activity_or_its_creation_overlaps_it(admin_client):
    actor = make_actor()
    integration = make_integration()
    window_start, window_end = NOON - timedelta(hours=2), NOON
    cases = {
        # Activity that began before the window and ran into it.
        "ran-into-it": {"first_event": window_start - timedelta(hours=3), "last_event": window_start + timedelta(1)},
        # Activity that spans the whole window.
        "spans-it": {"first_event": window_start - timedelta(hours=1), "last_event": window_end + timedelta(hours=1)},
        # Activity before the window, raised inside it: Defender was asked by creation time.
        "raised-in-it": {"first_event": window_start - timedelta(hours=5), "last_event": window_start - timedelta(1)},
        # No event times: the creation counts.
        "created-in-it": {"first_event": None, "last_event": None},
        "all-before": {"first_event": window_start - timedelta(hours=5), "last_event": window_start - timedelta(1)},
        "all-after": {"first_event": window_end + timedelta(minutes=1), "last_event": window_end + timedelta(hours=1)},
        "no-time-at-all": {"first_event": None, "last_event": None, "created": None},
    }
    created = {
        "ran-into-it": window_start + timedelta(minutes=30),
        "spans-it": window_end + timedelta(hours=2),
        "raised-in-it": window_start + timedelta(minutes=1),
        "created-in-it": window_start + timedelta(minutes=1),
        "all-before": window_start - timedelta(minutes=1),
        "all-after": window_end + timedelta(hours=2),
    }
    alert_store.store_alerts(
        actor,
        integration,
        [defender_alert(name, **({"created": created.get(name)} | times)) for name, times in cases.items()],
    )
    query = "?period=custom&since=2026-05-01T10:00&until=2026-05-01T12:00&tz=UTC"

    response = admin_client.get(actor_url(actor) + query)

    assert sorted(shown_ids(response)) == ["created-in-it", "raised-in-it", "ran-into-it", "spans-it"]
    assert response.context["counts"].outside == 3
    assert "An alert is in a window when its activity (first to last event) or its creation falls in it." in (
        response.content.decode()
    )


@pytest.mark.parametrize(("period", "expected"), [("1h", 1), ("24h", 2), ("7d", 3), ("30d", 4), ("all", 5)])
def test_the_presets_narrow_the_table_to_the_last_hour_day_week_or_month(admin_client, period, expected):
    actor = make_actor()
    integration = make_integration()
    now = timezone.now()
    ages = [timedelta(minutes=20), timedelta(hours=20), timedelta(days=5), timedelta(days=20), timedelta(days=60)]
    alert_store.store_alerts(
        actor,
        integration,
        [
            defender_alert(f"aged-{number}", created=now - age, first_event=now - age, last_event=now - age)
            for number, age in enumerate(ages)
        ],
    )

    response = admin_client.get(actor_url(actor) + f"?period={period}")

    assert sorted(shown_ids(response)) == [f"aged-{number}" for number in range(expected)]
    assert response.context["counts"].outside == 5 - expected


def test_a_custom_range_is_read_in_the_viewers_time_zone(admin_client):
    actor = make_actor()
    store(actor, 1, created=NOON, first_event=NOON, last_event=NOON)

    # 17:00 to 18:00 in Kolkata is 11:30 to 12:30 UTC; 12:00 to 13:00 there is 06:30 to 07:30 UTC.
    inside = admin_client.get(
        actor_url(actor) + "?period=custom&since=2026-05-01T17:00&until=2026-05-01T18:00&tz=Asia/Kolkata"
    )
    outside = admin_client.get(
        actor_url(actor) + "?period=custom&since=2026-05-01T12:00&until=2026-05-01T13:00&tz=Asia/Kolkata"
    )

    assert len(shown_ids(inside)) == 1 and shown_ids(outside) == []
    assert "No stored alert is in this window." in outside.content.decode()


def test_a_custom_range_that_ends_before_it_starts_is_explained_next_to_its_field(admin_client):
    actor = make_actor()
    store(actor, 2)

    response = admin_client.get(actor_url(actor) + "?period=custom&since=2026-05-02T10:00&until=2026-05-01T10:00")

    assert response.status_code == 200
    errors = response.context["alert_filter"].form.errors
    assert errors["until"] == ["The range must end after it starts: choose an Active until after Active from."]
    content = response.content.decode()
    assert 'value="2026-05-02T10:00"' in content and 'aria-invalid="true"' in content
    # A range that cannot be narrows nothing.
    assert len(shown_ids(response)) == 2


@pytest.mark.parametrize(
    "query", ["?period=forever", "?period=custom&since=yesterday", "?since=2026-13-45T99:00", "?tz=Mars/Base&period=1h"]
)
def test_nothing_typed_into_the_time_filter_gives_a_server_error(admin_client, query):
    actor = make_actor()
    store(actor, 1)
    assert admin_client.get(actor_url(actor) + query).status_code == 200
    assert admin_client.get(actor_url(actor, "actor-alerts-csv") + query).status_code == 200


def test_a_range_left_over_from_a_custom_range_does_not_narrow_a_preset(admin_client):
    actor = make_actor()
    now = timezone.now()
    alert_store.store_alerts(
        actor, make_integration(), [defender_alert("recent", **raised_at(now - timedelta(minutes=5)))]
    )

    response = admin_client.get(actor_url(actor) + "?period=24h&since=2020-01-01T00:00&until=2020-01-02T00:00")

    assert shown_ids(response) == ["recent"]


def test_the_csv_export_holds_the_time_window_the_table_shows(admin_client):
    actor = make_actor()
    integration = make_integration()
    store(actor, 1, integration=integration, **raised_at(NOON - timedelta(days=9)))
    alert_store.store_alerts(
        actor, integration, [defender_alert("in-the-window", **raised_at(NOON - timedelta(hours=1)))]
    )
    asked(actor, integration, NOON - timedelta(days=1), NOON)

    by_default = csv_rows(admin_client.get(actor_url(actor, "actor-alerts-csv")))
    everything = csv_rows(admin_client.get(actor_url(actor, "actor-alerts-csv") + "?period=all"))

    assert [row["Alert ID"] for row in by_default] == ["in-the-window"]
    assert len(everything) == 2


def test_the_window_last_asked_is_the_last_get_alerts_even_with_an_older_ask_of_another_integration(admin_client):
    actor = make_actor()
    today, last_month = make_integration(name="Defender EU"), make_integration(name="Defender US")
    alert_store.store_alerts(actor, today, [defender_alert("today", **raised_at(NOON - timedelta(hours=1)))])
    alert_store.store_alerts(actor, last_month, [defender_alert("last-month", **raised_at(NOON - timedelta(days=30)))])
    asked(actor, today, NOON - timedelta(days=1), NOON)
    asked(actor, last_month, NOON - timedelta(days=31), NOON - timedelta(days=29))

    response = admin_client.get(actor_url(actor))

    assert shown_ids(response) == ["today"]
    # Each integration's line still counts the alerts of the window it was asked for.
    content = response.content.decode()
    assert content.count("1 stored alert on ws-fin-07 in that window.") == 2
    assert "1 more stored alert is outside this window" in content


def test_a_remote_answer_for_the_same_window_joins_the_window_last_asked(admin_client):
    actor = make_actor()
    local, remote = make_integration(name="Defender EU"), make_integration(name="Defender US")
    alert_store.store_alerts(actor, local, [defender_alert("local", **raised_at(NOON - timedelta(hours=1)))])
    alert_store.store_alerts(actor, remote, [defender_alert("remote", **raised_at(NOON - timedelta(hours=2)))])
    asked(actor, local, NOON - timedelta(days=1), NOON, asked_at=NOON)
    asked(actor, remote, NOON - timedelta(days=1), NOON, asked_at=NOON + timedelta(seconds=40))

    assert sorted(shown_ids(admin_client.get(actor_url(actor)))) == ["local", "remote"]


def test_the_clock_skew_tolerance_widens_the_window_last_asked(admin_client):
    actor = make_actor()
    integration = make_integration()
    # Stamped by a clock two minutes ahead: after the window asked, inside its five-minute tolerance.
    ahead = NOON + timedelta(minutes=2)
    alert_store.store_alerts(
        actor, integration, [defender_alert("ahead", created=ahead, first_event=ahead, last_event=ahead)]
    )
    asked(actor, integration, NOON - timedelta(hours=1), NOON)

    assert shown_ids(admin_client.get(actor_url(actor))) == ["ahead"]


# The Get alerts form keeps the choice made


def test_sorting_filtering_and_paging_keep_the_integrations_and_window_chosen(admin_client, monkeypatch):
    monkeypatch.setattr(operations_alerts, "run_job_here", lambda job_id: None)  # no network: only the choice matters
    actor = make_actor()
    eu, us = make_integration(name="Defender EU"), make_integration(name="Defender US")
    store(actor, 60, integration=eu)
    day = (timezone.now() - timedelta(days=3)).date()

    admin_client.post(
        actor_url(actor, "actor-get-alerts"),
        {
            "integrations": [us.pk],
            "window": "custom",
            "window_from": f"{day}T08:00",
            "window_until": f"{day}T09:30",
            "time_zone": "UTC",
        },
    )

    for query in ("?sort=title", "?severity=High&period=all", "?period=all&page=2"):
        form = admin_client.get(actor_url(actor) + query).context["fetch_form"]
        assert [(name, ticked) for _, name, ticked in form.integration_options()] == [
            ("Defender EU", False),
            ("Defender US", True),
        ]
        assert form["window"].value() == "custom"
        assert (form["window_from"].value(), form["window_until"].value()) == (f"{day}T08:00", f"{day}T09:30")


def test_the_choice_made_on_one_actor_does_not_carry_over_to_another(admin_client, monkeypatch):
    monkeypatch.setattr(operations_alerts, "run_job_here", lambda job_id: None)  # no network: only the choice matters
    actor, other = make_actor(), make_actor(name="Lobby kiosk", hostname="kiosk-01")
    eu, _ = make_integration(name="Defender EU"), make_integration(name="Defender US")

    admin_client.post(actor_url(actor, "actor-get-alerts"), {"integrations": [eu.pk], "window": "1h"})

    form = admin_client.get(actor_url(other)).context["fetch_form"]
    assert all(ticked for _, _, ticked in form.integration_options()) and form["window"].value() == "24h"


def test_an_integration_disabled_since_drops_out_of_the_choice_kept(admin_client, monkeypatch):
    monkeypatch.setattr(operations_alerts, "run_job_here", lambda job_id: None)  # no network: only the choice matters
    actor = make_actor()
    eu, _ = make_integration(name="Defender EU"), make_integration(name="Defender US")
    admin_client.post(actor_url(actor, "actor-get-alerts"), {"integrations": [eu.pk], "window": "7d"})
    Integration.objects.filter(pk=eu.pk).update(enabled=False)

    form = admin_client.get(actor_url(actor)).context["fetch_form"]

    # Nothing of the choice is left: every enabled integration, as on a first visit.
    assert [(name, ticked) for _, name, ticked in form.integration_options()] == [("Defender US", True)]
    assert form["window"].value() == "24h"


def test_the_custom_range_fields_say_which_time_zone_they_are_in(admin_client):
    make_integration()
    content = admin_client.get(actor_url(make_actor())).content.decode()
    assert 'From and Until are in your time zone, <span class="viewer-zone">UTC</span>.' in content
    assert 'For a custom range, in your time zone: <span class="viewer-zone">UTC</span>.' in content


# Columns


def test_more_columns_can_be_chosen_and_stay_across_sorting_and_paging(admin_client):
    actor = make_actor()
    store(actor, 60)

    response = admin_client.get(actor_url(actor) + "?columns=detection_source&columns=category")

    headers = [column.header for column in response.context["table"].columns]
    assert headers == ["Created", "Severity", "Title", "Category", "Detection source", "Status", "Machine", "Defender"]
    content = response.content.decode()
    assert 'value="category" id="column-category" checked' in content
    assert 'value="mitre_techniques" id="column-mitre_techniques">' in content
    sort_link = re.search(r'<a href="\?([^"]*sort=title[^"]*)">Title</a>', content).group(1)
    assert "columns=detection_source" in sort_link and "columns=category" in sort_link
    assert re.search(r'href="\?[^"]*columns=category[^"]*page=2', content)


def test_a_status_the_siem_exporter_does_not_send_is_shown_as_not_reported(admin_client):
    actor = make_actor()
    siem = make_integration(name="SIEM", api_flavour="siem", resource="https://graph.windows.net", api_version="")
    store(actor, 1, siem, status="Unknown")
    response = admin_client.get(actor_url(actor))
    [row] = response.context["table"].page.object_list
    assert row.get_cell("status") == "Not reported"
    assert ">Unknown<" not in response.content.decode()


def test_the_any_time_table_of_a_large_actor_is_paged_by_its_kept_count(
    admin_client, monkeypatch, django_assert_max_num_queries
):
    from defender import filters
    from defender.views import actors as actor_views

    for module in (filters, actor_views):  # "large" from six alerts on
        monkeypatch.setattr(module, "COUNTED_UP_TO", 5, raising=False)
    actor = make_actor()
    store(actor, 60)

    with django_assert_max_num_queries(20) as queries:
        response = admin_client.get(actor_url(actor) + "?period=all&page=2")
    # Read before the next request: a request empties the connection's query log.
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "defender_alert" in q["sql"]]
    filtered = admin_client.get(actor_url(actor) + "?period=all&severity=High")

    assert counts == []  # neither the table nor the status line counted the alerts again
    assert response.context["table"].paginator.count == 60 == Actor.objects.get(pk=actor.pk).alert_count
    assert len(response.context["table"].page.object_list) == 10
    high = Alert.objects.filter(actor=actor, severity="High").count()
    assert filtered.context["table"].paginator.count == high < 60  # a filter is counted, as the kept count cannot
