"""Forms of the Actors area: the actor itself, and the Get alerts form of an actor's page."""

import zoneinfo
from datetime import UTC, datetime, timedelta

from crispy_forms.bootstrap import InlineRadios
from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Column, Div, Field, Layout, Row
from django import forms
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from defender.forms.choices import ModelMultipleChoiceField
from defender.models import Actor, ActorMachine, Integration

# Defender keeps an endpoint's data for 180 days at most, and the integration's lookback is capped there too.
OLDEST_WINDOW = timedelta(days=180)
DEFAULT_CLOCK_SKEW = timedelta(seconds=300)
REMEMBERED_CHOICE = "actor-get-alerts-choice"  # the session key of the Get alerts form's last choice


class ActorForm(forms.ModelForm):
    class Meta:
        model = Actor
        fields = ["name", "hostname", "alternate_hostname", "ip_address", "operating_system", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}

    def clean(self):
        cleaned = super().clean()
        hostname = cleaned.get("hostname") or ""
        alternate = cleaned.get("alternate_hostname") or ""
        if hostname and alternate and hostname.lower() == alternate.lower():
            self.add_error("alternate_hostname", "The alternate hostname is the hostname again: leave it empty.")
        for field, value in (("hostname", hostname), ("alternate_hostname", alternate)):
            if value and field not in self.errors:
                other = self._actor_named(value)
                if other:
                    # An alert belongs to one actor: two actors with one name would take each other's alerts.
                    self.add_error(field, f"The actor {other.name} already has the name {value}.")
        return cleaned

    def save(self, commit=True):
        actor = super().save(commit)
        if commit and self.changed_data and {"hostname", "alternate_hostname", "ip_address"} & set(self.changed_data):
            # The Defender machines learnt under the old names may be another endpoint now: sweeps learn afresh.
            ActorMachine.objects.filter(actor=actor).delete()
        return actor

    def _actor_named(self, name):
        name = name.lower()
        actors = Actor.objects.alias(lower_hostname=Lower("hostname"), lower_alternate=Lower("alternate_hostname"))
        return (
            actors.filter(Q(lower_hostname=name) | Q(lower_alternate=name))
            .exclude(pk=self.instance.pk)
            .only("name")
            .first()
        )


def in_zone(moment: datetime, zone_name: str) -> datetime:
    """A moment typed as wall-clock time in the named IANA zone (the server's when unknown or empty), made aware.

    Django made it aware in the server's zone already; the person meant their own wall-clock time.
    """
    try:
        zone = zoneinfo.ZoneInfo(zone_name.strip()) if zone_name and zone_name.strip() else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = None
    return moment.replace(tzinfo=None).replace(tzinfo=zone or timezone.get_current_timezone())


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, attrs=None):
        super().__init__(attrs, format="%Y-%m-%dT%H:%M")


class AlertFetchForm(forms.Form):
    """Which integrations to ask and for which window. The window comes out as aware ``since`` and ``until``."""

    WINDOWS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(hours=24)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }
    CUSTOM = "custom"

    integrations = ModelMultipleChoiceField(
        queryset=Integration.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one integration to ask."},
    )
    window = forms.ChoiceField(
        label="Time window",
        choices=[(key, label) for key, (label, _) in WINDOWS.items()] + [(CUSTOM, "Custom range")],
        initial="24h",
        widget=forms.RadioSelect,
    )
    window_from = forms.DateTimeField(
        label="From",
        required=False,
        widget=DateTimeLocalInput(),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )
    window_until = forms.DateTimeField(
        label="Until",
        required=False,
        widget=DateTimeLocalInput(),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        help_text="Leave empty for now.",
    )
    # The browser's IANA time zone, filled in by alerts.js: From and Until are read as the person's local time.
    time_zone = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, remembered=None, **kwargs):
        super().__init__(*args, **kwargs)
        enabled = Integration.objects.filter(enabled=True).order_by("name")
        self.fields["integrations"].queryset = enabled
        rows = list(enabled.values_list("pk", "name", "lookback_hours"))
        self.enabled_integrations = [(pk, name) for pk, name, _ in rows]
        if not self.is_bound:
            self._start_from(remembered or {}, rows)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        # The integrations are listed by integration_options(): a site may have hundreds, and a widget per
        # checkbox would take most of the page's render time.
        self.helper.layout = Layout(
            InlineRadios("window"),
            Div(
                Row(
                    Column("window_from", css_class="col-sm-6 col-lg-3"),
                    Column("window_until", css_class="col-sm-6 col-lg-3"),
                ),
                # alerts.js names the viewer's zone; without JavaScript the server's zone applies.
                HTML(
                    '<p class="form-text mt-0">From and Until are in your time zone, '
                    '<span class="viewer-zone">{{ server_zone }}</span>.</p>'
                ),
                css_class="custom-range",
            ),
            Field("time_zone"),
        )

    def _start_from(self, remembered, rows):
        """The choice last made on this page, or else every enabled integration and a window covering their
        lookback. An integration since disabled or deleted drops out of the remembered choice."""
        enabled = [pk for pk, _, _ in rows]
        chosen = [pk for pk in remembered.get("integrations", ()) if pk in enabled]
        self.fields["integrations"].initial = chosen or enabled
        if remembered.get("window") in dict(self.fields["window"].choices) and chosen:
            self.fields["window"].initial = remembered["window"]
            self.fields["window_from"].initial = remembered.get("window_from") or None
            self.fields["window_until"].initial = remembered.get("window_until") or None
        else:
            lookback = max((hours for _, _, hours in rows), default=24)
            self.fields["window"].initial = self.window_covering(timedelta(hours=lookback))

    def remember(self, session, actor):
        """Keep this (valid) choice for the actor's page, so sorting, filtering or paging its table keeps it too.

        One actor's at a time: another actor's page starts from every enabled integration again."""
        custom = self.cleaned_data["window"] == self.CUSTOM
        session[REMEMBERED_CHOICE] = {
            "actor": actor.pk,
            "integrations": [integration.pk for integration in self.cleaned_data["integrations"]],
            "window": self.cleaned_data["window"],
            "window_from": self.data.get(self.add_prefix("window_from"), "") if custom else "",
            "window_until": self.data.get(self.add_prefix("window_until"), "") if custom else "",
        }

    @staticmethod
    def recall(session, actor):
        """The choice last made on this actor's page, if the last Get alerts was on it."""
        remembered = session.get(REMEMBERED_CHOICE)
        return remembered if isinstance(remembered, dict) and remembered.get("actor") == actor.pk else None

    @classmethod
    def window_covering(cls, lookback):
        """The shortest listed window that covers the integrations' lookback window (the widest, if none does)."""
        return next((key for key, (_, span) in cls.WINDOWS.items() if span >= lookback), "30d")

    def integration_options(self):
        """(id, name, ticked) for each enabled integration: every one at first, then as the person chose."""
        chosen = {str(value) for value in self["integrations"].value() or ()}
        return [(pk, name, str(pk) in chosen) for pk, name in self.enabled_integrations]

    def clean_integrations(self):
        # The choices load only names; asking needs every connection field and the proxy rule.
        chosen = self.cleaned_data["integrations"]
        return Integration.objects.filter(pk__in=[i.pk for i in chosen]).select_related("proxy_rule").order_by("name")

    @property
    def has_integrations(self):
        return bool(self.enabled_integrations)

    def _aware(self, moment):
        return in_zone(moment, self.data.get(self.add_prefix("time_zone")) or "") if moment else None

    def clean(self):
        cleaned = super().clean()
        now = timezone.now()
        choice = cleaned.get("window")
        if choice in self.WINDOWS:
            cleaned["since"], cleaned["until"] = now - self.WINDOWS[choice][1], now
        elif choice == self.CUSTOM:
            self._clean_custom(cleaned, now)
        return cleaned

    def _clean_custom(self, cleaned, now):
        if "window_from" in self.errors or "window_until" in self.errors:
            return
        since = self._aware(cleaned.get("window_from"))
        until = self._aware(cleaned.get("window_until")) or now
        skew = self._clock_skew(cleaned.get("integrations"))
        if since is None:
            self.add_error("window_from", "Enter when the window starts.")
            return
        if since > now + skew:
            self.add_error("window_from", "The window starts in the future: choose a start before now.")
        elif since < now - OLDEST_WINDOW:
            self.add_error("window_from", "The window can start at most 180 days ago: Defender keeps no older data.")
        if until <= since:
            self.add_error("window_until", "The window must end after it starts: choose an Until later than From.")
        elif until > now + skew:
            minutes = int(skew.total_seconds() // 60)
            self.add_error(
                "window_until",
                f"The window ends in the future: Until may be at most {minutes} minutes after now "
                "(the clock-skew tolerance). Leave it empty for now.",
            )
        if not self.errors:
            cleaned["since"], cleaned["until"] = since.astimezone(UTC), until.astimezone(UTC)

    @staticmethod
    def _clock_skew(integrations):
        """The largest clock-skew tolerance of the chosen integrations: an Until that far ahead is still "now"."""
        if not integrations:
            return DEFAULT_CLOCK_SKEW
        return timedelta(seconds=max(integration.clock_skew_seconds for integration in integrations))
