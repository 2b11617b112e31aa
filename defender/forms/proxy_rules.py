"""Proxy rule forms: the rule itself (password write-only) and the integrations assigned to it."""

from crispy_forms.helper import FormHelper
from django import forms
from django.db import transaction
from django.utils import timezone

from defender.forms import destination_changed
from defender.forms.choices import ModelMultipleChoiceField
from defender.models import Integration, ProxyRule

# RFC 1929 allows 255 bytes each for the user name and the password, but the SOCKS client this console uses sends a
# correct length byte only below 128 (the services refuse longer credentials for the same reason).
SOCKS5_MAX_BYTES = 127
PASSWORD_DESTINATION_FIELDS = ("proxy_type", "host", "ca_certificate")


class ProxyRuleForm(forms.ModelForm):
    password = forms.CharField(
        label="Password",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted; never shown again.",
    )

    class Meta:
        model = ProxyRule
        fields = ["name", "proxy_type", "host", "port", "username", "password", "ca_certificate", "bypass_hosts"]
        labels = {"name": "Name", "proxy_type": "Type", "host": "Host", "port": "Port", "username": "Username"}
        help_texts = {
            "name": "How integrations refer to this proxy, e.g. Corporate proxy.",
            "proxy_type": "HTTP and HTTPS proxies tunnel with CONNECT; SOCKS5 resolves names at the proxy.",
            "host": "The proxy's host name or IP address, without a scheme.",
            "port": "Often 3128 or 8080 for HTTP, 1080 for SOCKS5.",
        }
        widgets = {
            "ca_certificate": forms.Textarea(
                attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----", "spellcheck": "false"}
            ),
            "bypass_hosts": forms.Textarea(attrs={"rows": 3, "placeholder": "localhost\n.corp.example"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.has_password:
            self.fields[
                "password"
            ].help_text = "A password is saved. Leave blank to keep it; clear the username to remove it."
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("proxy_type") == ProxyRule.ProxyType.SOCKS5:
            for name in ("username", "password"):
                if len((cleaned.get(name) or "").encode()) > SOCKS5_MAX_BYTES:
                    self.add_error(name, f"SOCKS5 allows at most {SOCKS5_MAX_BYTES} bytes here.")
        if not cleaned.get("username"):
            # Without a username the proxy gets no credentials, so a saved password would only linger.
            cleaned["password"] = ""
        elif self.instance.pk and not cleaned.get("password"):
            if self.instance.has_password and destination_changed(self, PASSWORD_DESTINATION_FIELDS):
                # A saved password is only ever offered to the proxy it was typed for.
                self.add_error("password", "Type the password again: you changed the proxy it is sent to.")
            # Blank on Edit keeps the stored password: construct_instance skips fields missing from cleaned_data.
            cleaned.pop("password", None)
        return cleaned


class IntegrationChoiceField(ModelMultipleChoiceField):
    def label_from_instance(self, integration):
        if integration.proxy_rule is None:
            return integration.name
        return f"{integration.name} (now: {integration.proxy_rule.name})"


class ProxyAssignmentForm(forms.Form):
    """Which integrations use this rule: chosen ones move to it, the others assigned to it go direct."""

    integrations = IntegrationChoiceField(
        Integration.objects.select_related("proxy_rule"),
        label="Integrations using this proxy",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Hold Ctrl (or Cmd) to choose several. An integration can use one proxy rule at a time.",
    )

    def __init__(self, *args, rule, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule = rule
        self.user = user
        self.fields["integrations"].initial = [integration.pk for integration in rule.integrations.all()]
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def save(self):
        chosen = [integration.pk for integration in self.cleaned_data["integrations"]]
        stamp = {"updated_at": timezone.now(), "updated_by": self.user}
        with transaction.atomic():
            self.rule.integrations.exclude(pk__in=chosen).update(proxy_rule=None, **stamp)
            Integration.objects.filter(pk__in=chosen).update(proxy_rule=self.rule, **stamp)
        return len(chosen)
