"""Forms of the Executions area: importing ATTiRe logs, recording a procedure by hand, overriding an outcome."""

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator

from defender import validators
from defender.forms.actors import DateTimeLocalInput
from defender.forms.choices import ModelChoiceField, ModelMultipleChoiceField
from defender.models import Actor, Outcome
from defender.services.attire import MOST_BYTES

WINDOW_FIELD: dict[str, Any] = {
    "label": "Detection window (minutes)",
    "required": False,
    "validators": [MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
    "help_text": "How long after each procedure Defender may take to report it. Blank: each integration's (60).",
}


class AttireUploadForm(forms.Form):
    log = forms.FileField(
        label="ATTiRe log",
        help_text="The JSON file Invoke-AtomicRedTeam writes with -LoggingModule Attire-ExecutionLogger (up to 5 MB).",
        widget=forms.ClearableFileInput(attrs={"accept": ".json,application/json"}),
    )
    detection_window_minutes = forms.IntegerField(**WINDOW_FIELD)
    create_actors = forms.BooleanField(
        label="Create the actor when no actor is the target host",
        required=False,
        help_text="Off: a log whose target host is no actor is refused, naming the host.",
    )

    def clean_log(self):
        log = self.cleaned_data["log"]
        if log.size > MOST_BYTES:
            raise forms.ValidationError(f"The file is {log.size // 1024 // 1024} MB; an ATTiRe log is at most 5 MB.")
        return log


class ProcedureRecordForm(forms.Form):
    """One procedure run by hand (or by a tool that writes no ATTiRe log)."""

    actor = ModelChoiceField(queryset=Actor.objects.order_by("name"))
    technique_id = forms.CharField(
        label="MITRE technique",
        max_length=16,
        validators=[validators.validate_technique_id],
        help_text="e.g. T1003.001",
    )
    name = forms.CharField(max_length=500, required=False, help_text="What was done, e.g. Dump LSASS with comsvcs.dll.")
    started_at = forms.DateTimeField(label="Started", widget=DateTimeLocalInput())
    stopped_at = forms.DateTimeField(label="Stopped", widget=DateTimeLocalInput())
    command = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text="The command line as run: alerts whose process evidence ran it match.",
    )
    detection_window_minutes = forms.IntegerField(**WINDOW_FIELD)

    def clean(self):
        cleaned = super().clean()
        started, stopped = cleaned.get("started_at"), cleaned.get("stopped_at")
        if started and stopped and stopped < started:
            self.add_error("stopped_at", "The procedure stopped before it started: check both times.")
        return cleaned


class OutcomeOverrideForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("", "The engine's (no override)")] + [(o.value, o.label) for o in Outcome if o != Outcome.PENDING],
        required=False,
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("outcome") and not (cleaned.get("reason") or "").strip():
            self.add_error("reason", "Say why the outcome is overridden: the page shows it with the override.")
        return cleaned


class CoverageForm(forms.Form):
    """The period (by when procedures started) and the actors the coverage is of; all blank: everything."""

    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Inclusive.")
    actors = ModelMultipleChoiceField(
        queryset=Actor.objects.order_by("name"), required=False, help_text="None chosen: every actor."
    )

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            self.add_error("until", "The period ends before it starts.")
        return cleaned

    def period(self):
        """(since, until) as aware UTC datetimes, until the end of its day; None for an open end."""
        data = self.cleaned_data
        since = datetime.combine(data["since"], time.min, UTC) if data.get("since") else None
        until = datetime.combine(data["until"] + timedelta(days=1), time.min, UTC) if data.get("until") else None
        return since, until
