"""Proxy rule forms: the rule itself (password write-only) and the integrations assigned to it."""

from crispy_forms.helper import FormHelper
from django import forms
from django.db import transaction
from django.utils import timezone

from defender import destinations
from defender.forms import confirmed_retyping, moved_secrets_message, retype_message
from defender.forms.choices import ModelMultipleChoiceField
from defender.models import Integration, ProxyRule

# RFC 1929 allows 255 bytes each for the user name and the password, but the SOCKS client this console uses sends a
# correct length byte only below 128 (the services refuse longer credentials for the same reason).
SOCKS5_MAX_BYTES = 127


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
        self.moved_integrations = []
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
            # Blank on Edit keeps the stored password: construct_instance skips fields missing from cleaned_data.
            cleaned.pop("password", None)
        return cleaned

    def _post_clean(self):
        super()._post_clean()
        self.moved_integrations = []
        if self.instance.pk is None:
            return
        # A saved password is only ever offered to the proxy it was typed for.
        reasons = destinations.retype_reasons(self.instance)
        if reasons and self.instance.username:
            self.add_error("password", retype_message("password", reasons))
        # The integrations' client secrets cannot be typed here: say which ones this change moves, before saving.
        # Their rule is loaded afresh, so the comparison is between the saved rule and this form's.
        using = Integration.objects.filter(proxy_rule_id=self.instance.pk).select_related("proxy_rule", "remote_node")
        self.moved_integrations = destinations.moved_by(using.order_by("name"), proxy_rule=self.instance)
        if self.moved_integrations and not confirmed_retyping(self):
            self.add_error(None, moved_secrets_message(self.moved_integrations))


class IntegrationChoiceField(ModelMultipleChoiceField):
    def label_from_instance(self, integration):
        if integration.proxy_rule is None:
            return integration.name
        return f"{integration.name} (now: {integration.proxy_rule.name})"


class ProxyAssignmentForm(forms.Form):
    """Which integrations use this rule: chosen ones move to it, the others assigned to it go direct."""

    integrations = IntegrationChoiceField(
        Integration.objects.select_related("proxy_rule"),
        label="Integrations to route through this proxy",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Hold Ctrl (or Cmd) to choose several. An integration can use one proxy rule at a time.",
    )

    def __init__(self, *args, rule, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.moved_integrations = []
        self.rule = rule
        self.user = user
        self.fields["integrations"].initial = [integration.pk for integration in rule.integrations.all()]
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def clean(self):
        cleaned = super().clean()
        chosen = cleaned.get("integrations")
        if chosen is None:
            return cleaned
        chosen_ids = {integration.pk for integration in chosen}
        leaving = self.rule.integrations.exclude(pk__in=chosen_ids).select_related("remote_node")
        arriving = [integration for integration in chosen if integration.proxy_rule_id != self.rule.pk]
        moved = destinations.moved_by(leaving, proxy_rule=None) + destinations.moved_by(arriving, proxy_rule=self.rule)
        self.moved_integrations = sorted(moved, key=lambda integration: integration.name)
        if self.moved_integrations and not confirmed_retyping(self):
            # Assigning here cannot ask for each client secret: say whose must be typed again, before saving.
            raise forms.ValidationError(moved_secrets_message(self.moved_integrations))
        return cleaned

    def save(self):
        chosen = [integration.pk for integration in self.cleaned_data["integrations"]]
        stamp = {"updated_at": timezone.now(), "updated_by": self.user}
        with transaction.atomic():
            self.rule.integrations.exclude(pk__in=chosen).update(proxy_rule=None, **stamp)
            Integration.objects.filter(pk__in=chosen).update(proxy_rule=self.rule, **stamp)
        return len(chosen)
