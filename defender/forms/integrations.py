"""Add Integration > Defender ATP, and its Edit: one form, the client secret write-only."""

import json
from dataclasses import asdict

from crispy_forms.helper import FormHelper
from crispy_forms.layout import HTML, Div, Field, Layout
from django import forms
from django.utils.crypto import salted_hmac

from defender import destinations, presets
from defender.forms import retype_message
from defender.forms.choices import ModelChoiceField
from defender.forms.typed_secrets import KeepsTypedSecret
from defender.models import Integration, ProxyRule, RemoteNode
from defender.services.errors import permission_advice

ADVANCED_FIELDS = (
    "connect_timeout",
    "read_timeout",
    "verify_tls",
    "ca_certificate",
    "max_retries",
    "page_size",
    "lookback_hours",
    "clock_skew_seconds",
    "secret_expires_on",
)

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


class IntegrationForm(KeepsTypedSecret, forms.ModelForm):
    client_secret = forms.CharField(
        label="Client Secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The secret's Value from Certificates & secrets (not its Secret ID). Stored encrypted.",
    )
    remote_node = ModelChoiceField(
        RemoteNode.objects.all(),
        label="Remote node",
        required=False,
        empty_label="Choose a node",
        help_text="For Remote: the node inside the network that reaches Defender runs the Test and alert lookups.",
    )
    proxy_rule = ModelChoiceField(
        ProxyRule.objects.all(),
        label="Proxy",
        required=False,
        empty_label="No proxy (connect directly)",
        help_text="Send this integration's traffic through a proxy rule.",
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
            "client_secret",
            "api_version",
            "auth_url",
            "tenant_id",
            "resource",
            "proxy_rule",
            "enabled",
            *ADVANCED_FIELDS,
        ]
        labels = {
            "name": "Name",
            "location": "Location",
            "api_flavour": "API flavour",
            "host": "Host",
            "port": "Port",
            "protocol": "Protocol",
            "client_id": "Client ID",
            "api_version": "API Version",
            "auth_url": "Auth URL",
            "tenant_id": "Tenant ID",
            "resource": "Resource",
            "enabled": "Enabled",
            "connect_timeout": "Connect timeout (seconds)",
            "read_timeout": "Read timeout (seconds)",
            "verify_tls": "Verify TLS",
            "ca_certificate": "CA certificate",
            "max_retries": "Maximum retries",
            "page_size": "Page size",
            "lookback_hours": "Lookback window (hours)",
            "clock_skew_seconds": "Clock-skew tolerance (seconds)",
            "secret_expires_on": "Secret expiry date",
        }
        help_texts = {
            "name": "How this integration is called in the console, e.g. Defender EU.",
            "location": "Local: this site calls Defender itself. Remote: a remote node does, from its network.",
            "api_flavour": "Which Microsoft API to read alerts from.",
            "host": "The API host for your tenant's region, without https://.",
            "port": "443 unless your network routes the API elsewhere.",
            "protocol": "HTTPS; HTTP only for a test server.",
            "client_id": "The application (client) ID of the app registration.",
            "api_version": "Current by default (v1.0).",
            "auth_url": "Where tokens come from; right for the public cloud by default.",
            "tenant_id": "The directory (tenant) ID GUID, or a verified domain.",
            "resource": "Needed for the legacy SIEM API (https://graph.windows.net); filled in for the others.",
            "enabled": "Disabled integrations are not asked for alerts.",
            "connect_timeout": "How long to wait for a connection. Default 5.",
            "read_timeout": "How long to wait for an answer. Default 30.",
            "verify_tls": "Check the API's certificate. Turn off only to diagnose.",
            "ca_certificate": "Paste a PEM to trust a private CA or a TLS-intercepting proxy.",
            "max_retries": "Retries after 429 or 5xx answers, honouring Retry-After. Default 3.",
            "page_size": "Alerts per request; the API allows up to 10,000. Default 1000.",
            "lookback_hours": "How far back to ask for alerts. Default 24 hours.",
            "clock_skew_seconds": "Drift allowed between this site's clock and Defender's. Default 300.",
            "secret_expires_on": "From Certificates & secrets; the console warns before the secret expires.",
        }
        widgets = {
            "api_flavour": forms.Select(attrs={"data-role": "api-flavour"}),
            "ca_certificate": forms.Textarea(
                attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----", "spellcheck": "false"}
            ),
            "secret_expires_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.keep_typed_secret(user)
        editing = self.instance.pk is not None
        self.nodes_exist = RemoteNode.objects.exists()
        self.fields["location"].widget = LocationRadioSelect(
            choices=self.fields["location"].choices,
            # Remote is shown but cannot be picked until there is a node to run it.
            disabled_choices=() if self.nodes_exist else (Integration.Location.REMOTE,),
        )
        if not self.nodes_exist:
            self.fields["location"].help_text = f"Local: this site calls Defender itself. {REMOTE_NOT_YET}"
        if not editing:
            self._fill_defaults()
        secret = self.fields["client_secret"]
        secret.required = not editing
        if editing and self.instance.has_client_secret:
            expiry = self.instance.secret_expires_on
            saved = f"A secret is saved (expires on {expiry:%Y-%m-%d})." if expiry else "A secret is saved."
            secret.help_text = f"{saved} Leave blank to keep it."

    def _fill_defaults(self):
        """A new integration starts on the default preset of its flavour, with the current API version."""
        flavour = self.instance.api_flavour
        preset = presets.default_preset(flavour)
        defaults = {
            "host": preset.host,
            "auth_url": preset.auth_url,
            "resource": preset.resource,
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
        if self.instance.pk and not cleaned.get("client_secret"):
            # Blank on Edit keeps the stored secret: construct_instance skips fields missing from cleaned_data.
            cleaned.pop("client_secret", None)
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        # The instance now holds what was typed. A kept secret must still go where it was typed for (Test and Get
        # alerts refuse it otherwise); ask for it here, where it can be typed, rather than fail later.
        reasons = destinations.retype_reasons(self.instance)
        if reasons:
            self.add_error("client_secret", retype_message("client secret", reasons))

    def full_clean(self):
        super().full_clean()
        if self.is_bound and self.errors:
            self.ask_to_retype_secret()

    def ask_to_retype_secret(self):
        """The typed secret is not sent back with the page: say it is kept, or (when none was typed for a new
        integration) where it has to be typed."""
        bound = self["client_secret"]
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
    def helper(self):
        # Built on access, after validation, so the Advanced options open by themselves when they hold an error.
        helper = FormHelper(self)
        helper.form_tag = False
        helper.disable_csrf = True
        advanced = "collapse show" if self.advanced_has_errors else "collapse"
        helper.layout = Layout(
            "name",
            "location",
            "remote_node",
            "api_flavour",
            HTML('{% include "defender/integrations/_required_roles.html" %}'),
            "host",
            HTML('{% include "defender/integrations/_host_presets.html" %}'),
            "port",
            "protocol",
            "client_id",
            Field("client_secret", autocomplete="new-password"),
            "api_version",
            "auth_url",
            "tenant_id",
            "resource",
            "proxy_rule",
            "enabled",
            HTML(
                '<button class="btn btn-link px-0 mb-2" type="button" data-bs-toggle="collapse" '
                'data-bs-target="#advanced-options" aria-controls="advanced-options" '
                f'aria-expanded="{"true" if self.advanced_has_errors else "false"}">'
                '<i class="bi bi-sliders" aria-hidden="true"></i> Advanced options</button>'
            ),
            Div(*ADVANCED_FIELDS, css_id="advanced-options", css_class=f"{advanced} border-start ps-3 mb-3"),
        )
        return helper


def preset_data():
    """Per API flavour: its presets, defaults and required permissions, for the preset buttons and the page script."""
    return {
        flavour: {
            "label": label,
            "api_version": presets.DEFAULT_API_VERSION[flavour],
            "api_versions": list(presets.API_VERSIONS[flavour]),
            "default": asdict(presets.default_preset(flavour)),
            "presets": [asdict(preset) for preset in presets.presets_for(flavour)],
            "roles": list(presets.REQUIRED_ROLES[flavour]),
            "permission_advice": permission_advice(flavour),
        }
        for flavour, label in presets.API_FLAVOURS
    }
