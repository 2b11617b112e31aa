"""Add Integration > Defender ATP, and its Edit: one form, the client secret write-only."""

import json

from crispy_forms.helper import FormHelper
from django import forms
from django.utils.crypto import salted_hmac

from defender import presets
from defender.forms.choices import ModelChoiceField
from defender.forms.health import NotifyFieldsMixin
from defender.forms.typed_secrets import KeepsTypedSecret
from defender.forms.write_only import CERTIFICATE_NOT_KEPT, WriteOnlyCredentialMixin
from defender.models import Integration, RemoteNode
from defender.operations import health, sync

ADVANCED_FIELDS = (
    "connect_timeout",
    "read_timeout",
    "verify_tls",
    "ca_certificate",
    "max_retries",
    "page_size",
    "lookback_hours",
    "clock_skew_seconds",
    "detection_window_minutes",
    "calls_per_minute",
    "calls_per_hour",
    "graph_all_products",
    "secret_expires_on",
)

# The Operational status group, in the order the page shows it ("forget_webhook" only while a webhook is saved).
HEALTH_FIELDS = (
    "health_check_minutes",
    "sync_minutes",
    "notify_after_failures",
    "notify_emails",
    "notify_webhook_url",
    "forget_webhook",
)
# A week: a longer interval is not a health check; the Django admin can still set one.
MAX_SCHEDULE_MINUTES = 7 * 24 * 60

REMOTE_NOT_YET = "Remote integrations need a remote node: add one in Settings > Remote Nodes first."
CHOOSE_NODE = "Choose the remote node that runs this integration."
RETYPE_SECRET = "Type the client secret again: it is never sent back to the page."


class LocationRadioSelect(forms.RadioSelect):
    """Radio buttons where some choices are shown but cannot be picked."""

    def __init__(self, *args, disabled_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.disabled_choices = set(disabled_choices)

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.disabled_choices:
            option["attrs"]["disabled"] = True
        return option


# A PEM of a key and a certificate chain is a few kilobytes; anything much larger is not one.
CERTIFICATE_UPLOAD_MAX = 64 * 1024


class IntegrationForm(NotifyFieldsMixin, KeepsTypedSecret, WriteOnlyCredentialMixin, forms.ModelForm):
    """Labels and help texts are the model's; the page lays the fields out in defender/integrations/_form.html."""

    # Not a column: the schedule is a django-celery-beat periodic task (defender.operations.health).
    health_check_minutes = forms.IntegerField(
        label="Health check every (minutes)",
        required=False,
        min_value=0,
        max_value=MAX_SCHEDULE_MINUTES,
        help_text="Runs the Test on a schedule, as if Test were pressed. Blank or 0: off.",
        widget=forms.NumberInput(attrs={"placeholder": "off"}),
    )

    # Not a column either: the alert sweep's schedule (defender.operations.sync).
    sync_minutes = forms.IntegerField(
        label="Sweep alerts every (minutes)",
        required=False,
        min_value=0,
        max_value=MAX_SCHEDULE_MINUTES,
        help_text=(
            "Reads every alert the tenant updated since the last sweep and stores those of actors (one call per "
            "10,000 alerts, whatever the number of actors). Blank or 0: off. Remote integrations are not swept."
        ),
        widget=forms.NumberInput(attrs={"placeholder": "off"}),
    )

    # The certificate may also come as a file (a .pem of the key and certificate), instead of pasted.
    client_certificate_file = forms.FileField(
        label="or upload the PEM file",
        required=False,
        widget=forms.ClearableFileInput(attrs={"accept": ".pem,.crt,.key,.txt"}),
    )

    class Meta:
        model = Integration
        fields = [
            "name",
            "location",
            "remote_node",
            "api_flavour",
            "host",
            "port",
            "protocol",
            "client_id",
            "credential_type",
            "client_secret",
            "client_certificate",
            "api_version",
            "auth_url",
            "tenant_id",
            "resource",
            "cloud",
            "proxy_rule",
            "enabled",
            "notify_after_failures",
            "notify_emails",
            "notify_webhook_url",
            *ADVANCED_FIELDS,
        ]
        field_classes = {"remote_node": ModelChoiceField, "proxy_rule": ModelChoiceField}
        widgets = {
            "api_flavour": forms.Select(attrs={"data-role": "api-flavour"}),
            "credential_type": forms.RadioSelect(attrs={"data-role": "credential-type"}),
            "ca_certificate": forms.Textarea(
                attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----", "spellcheck": "false"}
            ),
            "secret_expires_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def __init__(self, *args, user=None, **kwargs):
        # Who a typed secret (and webhook URL) is kept for, when the page comes back with errors.
        self.keeping_user_id = getattr(user, "pk", None)
        super().__init__(*args, **kwargs)
        self.keep_typed_secret(user)
        if self.instance.pk:
            self.initial.setdefault("sync_minutes", sync.schedule_minutes(self.instance))
            self.initial.setdefault("health_check_minutes", health.schedule_minutes(self.instance))
            note = health.schedule_note(self.instance)
            if note:
                self.fields["health_check_minutes"].help_text = note
        self.fields["remote_node"].empty_label = "Choose a node"
        self.fields["proxy_rule"].empty_label = "No proxy (connect directly)"
        self.nodes_exist = RemoteNode.objects.exists()
        self.fields["location"].widget = LocationRadioSelect(
            choices=self.fields["location"].choices,
            # Remote is shown but cannot be picked until there is a node to run it.
            disabled_choices=() if self.nodes_exist else (Integration.Location.REMOTE,),
        )
        if not self.nodes_exist:
            self.fields["location"].help_text = f"Local: this site calls Defender itself. {REMOTE_NOT_YET}"
        if self.instance.pk is None:
            self._fill_defaults()
            self.initial.setdefault("sync_minutes", sync.DEFAULT_MINUTES)
        # Only how crispy-forms renders each field (errors inline, as on the other forms); the layout is the template's.
        self.helper = FormHelper()
        self.helper.form_tag = False

    def save(self, commit=True):
        creating = self.instance.pk is None
        integration = super().save(commit=commit)
        if commit:
            health.set_schedule(integration, self.cleaned_data.get("health_check_minutes"))
            # A POST without the field (a script, an older page) keeps the sweep as it is; a new integration then
            # gets the default. A disabled integration keeps its schedule, and the sweep skips it.
            if "sync_minutes" in self.data:
                sync.set_schedule(integration, self.cleaned_data.get("sync_minutes"))
            elif creating:
                sync.set_schedule(integration, sync.DEFAULT_MINUTES)
        return integration

    @property
    def health_fields(self):
        """The Operational status group, in order."""
        return [self[name] for name in HEALTH_FIELDS if name in self.fields]

    def saved_secret_help_text(self):
        expiry = self.instance.secret_expires_on
        saved = f"A secret is saved (expires on {expiry:%Y-%m-%d})." if expiry else "A secret is saved."
        return f"{saved} Leave blank to keep it."

    def certificate_text(self, cleaned):
        upload = cleaned.pop("client_certificate_file", None)
        pasted = super().certificate_text(cleaned)
        if pasted.strip() or upload is None:
            return pasted
        if upload.size > CERTIFICATE_UPLOAD_MAX:
            self.add_error("client_certificate", "The file is too large for a PEM of a key and its certificate.")
            return ""
        try:
            return upload.read().decode("ascii")
        except UnicodeDecodeError:
            self.add_error(
                "client_certificate",
                "The file is not PEM text: convert a .pfx with openssl pkcs12 -in file.pfx -nodes -out file.pem.",
            )
            return ""

    def _fill_defaults(self):
        """A new integration starts on the default preset of its flavour, with the current API version."""
        flavour = self.instance.api_flavour
        preset = presets.default_preset(flavour)
        defaults = {
            "host": preset.host,
            "auth_url": preset.auth_url,
            "resource": preset.resource,
            "cloud": preset.cloud,
            "api_version": presets.DEFAULT_API_VERSION[flavour],
        }
        for name, value in defaults.items():
            if not getattr(self.instance, name):
                self.initial[name] = value

    def clean_location(self):
        location = self.cleaned_data["location"]
        if location == Integration.Location.REMOTE and not self.nodes_exist:
            raise forms.ValidationError(REMOTE_NOT_YET)
        return location

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("location") == Integration.Location.REMOTE and not cleaned.get("remote_node"):
            self.add_error("remote_node", CHOOSE_NODE)
        elif cleaned.get("location") == Integration.Location.LOCAL:
            # A Local integration is run by this site: it keeps no node, so the node's page lists only its own.
            cleaned["remote_node"] = None
        return cleaned

    def full_clean(self):
        super().full_clean()
        if self.is_bound and self.errors:
            self.ask_to_retype_secret()

    def ask_to_retype_secret(self):
        """The typed secret is not sent back with the page: say it is kept, or (when none was typed for a new
        integration) where it has to be typed."""
        bound = self["client_secret"]
        if self.cleaned_data.get("client_certificate") and "client_certificate" not in self.errors:
            # A certificate that was pasted is not sent back either: say so next to it.
            self["client_certificate"].help_text = CERTIFICATE_NOT_KEPT
        # The bound field copied its help text when validation created it: change the copy that is rendered.
        if self.kept_secret_token:
            bound.help_text = self.KEEP_WORDS
        elif self.instance.pk is None and RETYPE_SECRET not in bound.help_text:
            bound.help_text = f"{RETYPE_SECRET} {bound.help_text}"

    def values_digest(self) -> str:
        """A keyed digest of everything this valid form would save (the typed secret included), to tell whether a
        later POST carries the same values. Keyed, so that the session holds nothing that reveals the secret."""
        values = {name: getattr(value, "pk", value) for name, value in sorted(self.cleaned_data.items())}
        values["__integration__"] = self.instance.pk
        text = json.dumps(values, sort_keys=True, default=str)
        return salted_hmac("integration-form-values", text, algorithm="sha256").hexdigest()

    def connection_settings(self):
        """The settings as typed, for a Test before anything is saved (the stored secret when left blank)."""
        return self.instance.to_settings()

    @property
    def advanced_has_errors(self):
        return any(name in self.errors for name in ADVANCED_FIELDS)

    @property
    def advanced_fields(self):
        """The Advanced options, in order: the page shows them folded away unless one of them holds an error."""
        return [self[name] for name in ADVANCED_FIELDS]
