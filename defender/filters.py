"""Filters of the stored alerts table; the CSV export applies the same ones, so it downloads what is shown.

The time filter decides which alerts belong to a window by their activity: an alert is in a window when anything
Defender dated on it (its first event, its last event, or its creation) falls in the window, that is when the span
from the earliest to the latest of those times overlaps it. Defender is asked by creation time, so every alert a Get
alerts found is in the window it asked for; an alert whose activity ran into a window from before it is in it too.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import django_filters
from django import forms
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from defender.forms.actors import AlertFetchForm, DateTimeLocalInput, in_zone
from defender.models import Actor, Alert, AlertSource, Execution, Outcome, Procedure
from defender.services.alerts import clock_skew_text

ASKED = "asked"
ANY_TIME = "all"
CUSTOM = "custom"
RELATIVE = {key: span for key, (_, span) in AlertFetchForm.WINDOWS.items()}
PERIODS = [
    (ASKED, "The window last asked"),
    *((key, label) for key, (label, _) in AlertFetchForm.WINDOWS.items()),
    (ANY_TIME, "Any time"),
    (CUSTOM, "Custom range"),
]
TIME_HELP = (
    "An alert is in a window when its activity (first to last event) or its creation falls in it. "
    "The window last asked is the one Defender was last asked for, with its clock-skew tolerance."
)
RANGE_ATTRS = {"class": "form-control form-control-sm"}
DATETIME_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


def active_between(start: datetime | None, end: datetime | None) -> Q:
    """Alerts with a first event, last event or creation on each side of the window's ends (either end may be open):
    the span from their earliest to their latest known time overlaps start..end. A missing time never matches."""
    condition = Q()
    if end is not None:
        condition &= Q(first_event__lte=end) | Q(created__lte=end) | Q(last_event__lte=end)
    if start is not None:
        condition &= Q(last_event__gte=start) | Q(created__gte=start) | Q(first_event__gte=start)
    return condition


def last_asked(fetches) -> list:
    """The asks of the last Get alerts: the latest one and every other asked for the same window (a remote node
    answers later than the local integrations of the same Get alerts, for the same window)."""
    if not fetches:
        return []
    latest = max(fetches, key=lambda fetch: fetch.asked_at)
    return [fetch for fetch in fetches if (fetch.since, fetch.until) == (latest.since, latest.until)]


def returned_by(integration_ids) -> Exists:
    """Alerts one of these integrations returned: an EXISTS probe of the alert's sources (a join would repeat an
    alert several integrations returned, and take a DISTINCT to undo it). The source's own actor lets PostgreSQL read
    only the actor's sources, from their index, rather than every actor's of these integrations."""
    return Exists(
        AlertSource.objects.filter(
            alert=OuterRef("pk"), actor=OuterRef("actor"), integration_id__in=list(integration_ids)
        )
    )


def searched_by(fetch) -> Q:
    """The integration's alerts in the window it was asked for, widened by its clock-skew tolerance."""
    return Q(returned_by([fetch.integration_id])) & active_between(*fetch.searched)


def searched_by_any(fetches) -> Q:
    """The alerts any of these asks found: one EXISTS probe per window searched (the asks of one Get alerts share a
    window unless their clock-skew tolerances differ)."""
    by_window: dict = {}
    for fetch in fetches:
        by_window.setdefault(fetch.searched, []).append(fetch.integration_id)
    condition = Q(pk__in=[])
    for searched, integration_ids in by_window.items():
        condition |= Q(returned_by(integration_ids)) & active_between(*searched)
    return condition


@dataclass(frozen=True)
class TimeWindow:
    """The time the table shows: the window last asked, a span (either end open), or any time."""

    period: str
    start: datetime | None = None
    end: datetime | None = None
    asked: tuple = ()  # the fetches of the last Get alerts, for ASKED

    @property
    def label(self):
        return dict(PERIODS)[self.period]

    @property
    def is_any_time(self):
        return self.period != ASKED and self.start is None and self.end is None

    @property
    def condition(self) -> Q | None:
        if self.period == ASKED:
            return searched_by_any(self.asked)
        return None if self.is_any_time else active_between(self.start, self.end)

    @property
    def tolerance(self):
        """The clock-skew tolerance of the window last asked, in words ("" when none, or when it differs)."""
        skews = {fetch.clock_skew_seconds for fetch in self.asked}
        return clock_skew_text(skews.pop()) if len(skews) == 1 and 0 not in skews else ""


class AlertFilterForm(forms.Form):
    """The filter's form: From and To are read in the viewer's time zone, and only for a custom range."""

    since = forms.DateTimeField(
        label="Active from", required=False, widget=DateTimeLocalInput(RANGE_ATTRS), input_formats=DATETIME_FORMATS
    )
    until = forms.DateTimeField(
        label="Active until", required=False, widget=DateTimeLocalInput(RANGE_ATTRS), input_formats=DATETIME_FORMATS
    )
    # The browser's IANA time zone, filled in by alerts.js; without JavaScript From and To are the server's time.
    tz = forms.CharField(required=False, widget=forms.HiddenInput)

    def range_fields(self):
        return [self["since"], self["until"]]

    def choice_fields(self):
        return [self["severity"], self["status"]]

    def clean(self):
        cleaned = super().clean()
        zone = cleaned.get("tz") or ""
        for name in ("since", "until"):
            if cleaned.get(name):
                cleaned[name] = in_zone(cleaned[name], zone)
        if cleaned.get("period") != CUSTOM:
            cleaned["since"] = cleaned["until"] = None  # left over from an earlier custom range
        elif cleaned.get("since") and cleaned.get("until") and cleaned["until"] <= cleaned["since"]:
            self.add_error("until", "The range must end after it starts: choose an Active until after Active from.")
            cleaned.pop("since")  # a range that cannot be is not half applied
        return cleaned


class AlertFilter(django_filters.FilterSet):
    period = django_filters.ChoiceFilter(
        label="Time",
        choices=PERIODS,
        empty_label=None,
        method="filter_by_time",
        widget=forms.Select(attrs={"class": "form-select form-select-sm w-auto", "aria-describedby": "time-help"}),
        help_text=TIME_HELP,
    )
    # By rank, which the severity sort's index leads with; no DISTINCT: one column's values cannot repeat a row.
    severity = django_filters.MultipleChoiceFilter(
        choices=Alert.Severity.choices,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        method="filter_by_severity",
    )
    status = django_filters.MultipleChoiceFilter(
        choices=Alert.Status.choices,
        widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"}),
        method="filter_by_status",
    )

    class Meta:
        model = Alert
        fields = ["period", "severity", "status"]
        form = AlertFilterForm

    def __init__(self, data=None, *args, fetches=(), **kwargs):
        self.asked = tuple(last_asked(fetches))
        if data is not None and not data.get("period"):
            # The table opens on what the last Get alerts asked for; a link with only From or To means a range.
            data = data.copy()
            data["period"] = CUSTOM if data.get("since") or data.get("until") else self.default_period
        super().__init__(data, *args, **kwargs)

    @property
    def default_period(self):
        return ASKED if self.asked else ANY_TIME

    def filter_queryset(self, queryset):
        # Only the filters: From, To and the time zone are read by the period's filter.
        cleaned = self.form.cleaned_data
        for name, filter_ in self.filters.items():
            if name in cleaned:
                queryset = filter_.filter(queryset, cleaned[name])
        return queryset

    def filter_by_severity(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(severity_rank__in=sorted({Alert.SEVERITY_RANKS[severity] for severity in value}))

    def filter_by_status(self, queryset, name, value):
        return queryset.filter(status__in=value) if value else queryset

    def filter_by_time(self, queryset, name, value):
        condition = self.window.condition
        return queryset if condition is None else queryset.filter(condition)

    @cached_property
    def window(self) -> TimeWindow:
        # The fields that are valid count: a bogus severity in a link must not reset the time window.
        cleaned = self.form.cleaned_data if self.is_bound and not self.form.errors.get("period") else {}
        period = cleaned.get("period") or self.default_period
        if period == ASKED and not self.asked:
            return TimeWindow(ANY_TIME)
        if period == ASKED:
            return TimeWindow(ASKED, asked=self.asked)
        if period in RELATIVE:
            return TimeWindow(period, start=timezone.now() - RELATIVE[period])
        if period == CUSTOM:
            return TimeWindow(CUSTOM, cleaned.get("since"), cleaned.get("until"))
        return TimeWindow(ANY_TIME)

    @property
    def is_filtering(self):
        """Whether severity or status narrow the table (the time window is said on its own)."""
        return self.is_valid() and any(self.form.cleaned_data.get(name) for name in ("severity", "status"))


@dataclass(frozen=True)
class WindowCounts:
    """How many stored alerts the time window holds, how many it leaves out, and how many each last ask found."""

    in_window: int
    outside: int
    by_fetch: dict  # AlertFetch pk -> stored alerts of its integration in the window it asked for


# Past this many stored alerts, each last ask's line says how many it returned (AlertFetch.alert_count) instead of
# counting its stored alerts again: counting is a probe per alert, and the numbers only differ after a delete.
COUNTED_UP_TO = 2_000


def window_counts(alerts, window: TimeWindow, fetches, total=None, in_window=None) -> WindowCounts:
    """The counts the status lines and the line above the table say, so they agree with the table: one query at
    most. ``total`` (the actor's kept count) and ``in_window`` (the table's own pagination count, when neither
    severity nor status narrow it) spare counting what is known."""
    if total is not None and total > COUNTED_UP_TO:
        if in_window is None:
            condition = window.condition
            in_window = total if condition is None else alerts.filter(condition).order_by().count()
        by_fetch = {fetch.pk: fetch.alert_count for fetch in fetches}
        return WindowCounts(in_window=in_window, outside=max(total - in_window, 0), by_fetch=by_fetch)
    condition = window.condition
    totals = {"total": Count("pk"), "in_window": Count("pk", filter=condition) if condition else Count("pk")}
    totals |= {f"fetch_{fetch.pk}": Count("pk", filter=searched_by(fetch)) for fetch in fetches}
    counts = alerts.order_by().aggregate(**totals)
    return WindowCounts(
        in_window=counts["in_window"],
        outside=counts["total"] - counts["in_window"],
        by_fetch={fetch.pk: counts[f"fetch_{fetch.pk}"] for fetch in fetches},
    )


class ExecutionFilter(django_filters.FilterSet):
    """The Executions list: by actor, by the outcome or technique of any of its procedures, by import date."""

    actor = django_filters.ModelChoiceFilter(queryset=None)
    outcome = django_filters.ChoiceFilter(
        label="Outcome", choices=Outcome.choices, method="with_procedure", empty_label="Any outcome"
    )
    technique = django_filters.CharFilter(label="Technique", method="with_procedure", help_text="e.g. T1003")
    imported = django_filters.DateFromToRangeFilter(
        field_name="imported_at",
        label="Imported between",
        widget=django_filters.widgets.RangeWidget(attrs={"type": "date", **RANGE_ATTRS}),
    )

    class Meta:
        model = Execution
        fields = ["actor"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["actor"].queryset = Actor.objects.order_by("name")

    def with_procedure(self, queryset, name, value):
        """Executions with a procedure of that outcome or technique (a sub-technique counts for its parent): an
        EXISTS, so that no execution is listed twice and no DISTINCT is needed."""
        if not value:
            return queryset
        if name == "technique":
            value = value.strip().upper()
            condition = Q(technique_id=value) | Q(technique_id__startswith=f"{value}.")
        else:
            condition = Q(outcome=value)
        return queryset.filter(Exists(Procedure.objects.filter(condition, execution=OuterRef("pk"))))
