"""Export CSV writes the stored alerts as a spreadsheet reads them, and no cell of it runs as a formula."""

import csv

import pytest

from defender import alert_export, alert_store
from tests.factories import make_actor, make_integration
from tests.test_alert_store import defender_alert


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\rcmd", "'\rcmd"),
        ("Suspicious PowerShell", "Suspicious PowerShell"),
        ("", ""),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell, written):
    assert alert_export.neutralise(cell) == written


@pytest.mark.parametrize(
    "cell",
    [
        "  =1+1",
        " +cmd",
        '\n=HYPERLINK("http://evil")',
        "\n\n  @SUM(A1)",
        "\u00a0-2+3",  # a no-break space
        "\u3000=1",  # an ideographic (full-width) space
        "＝1+1",
        "＋cmd",
        "－2+3",
        "＠SUM(A1)",
        " ＝1",
        "\n＠SUM(A1)",
        "﹦1",  # the small form of =
    ],
)
def test_formula_starts_after_leading_whitespace_or_a_line_feed_or_in_full_width_are_neutralised(cell):
    assert alert_export.neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["Defender saw = 1 alert", "ws-fin-07", "a\n=b", "T1059.001; T1105", " 42"])
def test_text_with_a_formula_character_later_on_is_left_alone(cell):
    assert alert_export.neutralise(cell) == cell


@pytest.mark.django_db
def test_the_csv_has_a_header_and_one_line_per_alert():
    actor = make_actor()
    alert_store.store_alerts(
        actor, make_integration(), [defender_alert("a1"), defender_alert("a2", title="=cmd|' /C calc'!A0")]
    )

    rows = list(csv.reader("".join(alert_export.csv_lines(alert_store.stored_alerts(actor))).splitlines()))

    assert rows[0] == alert_export.CSV_HEADER
    assert len(rows) == 3
    assert {row[2] for row in rows[1:]} == {"Suspicious PowerShell command line", "'=cmd|' /C calc'!A0"}
    assert rows[1][0] == "2026-05-01 12:00:00"
