"""Proxy rule forms: the rule itself (password write-only) and the integrations assigned to it."""

from crispy_forms.helper import FormHelper
from django import forms
from django.db import transaction
from django.utils import timezone

from defender import destinations
from defender.forms import confirmed_retyping, moved_secrets_message
from defender.forms.choices import ModelMultipleChoiceField
from defender.forms.write_only import WriteOnlySecretMixin
from defender.models import Integration, ProxyRule

# RFC 1929 allows 255 bytes each for the user name and the password, but the SOCKS client this console uses sends a
# correct length byte only below 128 (the services refuse longer credentials for the same reason).
SOCKS5_MAX_BYTES = 127


class ProxyRuleForm(WriteOnlySecretMixin, forms.ModelForm):
    """Labels and help texts are the model's."""

    secret_field = "password"
    secret_noun = "password"
    secret_required = False
    saved_secret_help = "A password is saved. Leave blank to keep it; clear the username to remove it."

    class Meta:
        model = ProxyRule
        fields = ["name", "proxy_type", "host", "port", "username", "password", "ca_certificate", "bypass_hosts"]
        widgets = {
            "ca_certificate": forms.Textarea(
                attrs={"rows": 4, "placeholder": "-----BEGIN CERTIFICATE-----", "spellcheck": "false"}
            ),
            "bypass_hosts": forms.Textarea(attrs={"rows": 3, "placeholder": "localhost\n.corp.example"}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moved_integrations = []
        self.helper = FormHelper(self)
        self.helper.form_tag = False
        self.helper.disable_csrf = True

    def secret_is_sent(self):
        return bool(self.instance.username)  # without a username the proxy gets no credentials

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("proxy_type") == ProxyRule.ProxyType.SOCKS5:
            for name in ("username", "password"):
                if len((cleaned.get(name) or "").encode()) > SOCKS5_MAX_BYTES:
                    self.add_error(name, f"SOCKS5 allows at most {SOCKS5_MAX_BYTES} bytes here.")
        if not cleaned.get("username"):
            # Without a username the proxy gets no credentials, so a saved password would only linger.
            cleaned["password"] = ""
        return cleaned

    def _post_clean(self):
        super()._post_clean()  # a saved password is only ever offered to the proxy it was typed for
        self.moved_integrations = []
        if self.instance.pk is None:
            return
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
