"""The Operational status fields of an integration's form (the console's and the admin's): where notifications go.

The webhook URL is write-only like the client secret, since whoever has it can post to the channel: a password
input that never refills, blank on Edit keeps the saved one, and "Remove the saved webhook" drops it. A URL typed
into a form that comes back with errors is kept sealed in the page (defender.forms.typed_secrets), never in clear.
"""

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.validators import EmailValidator, URLValidator

from defender.fields import has_secret
from defender.forms.typed_secrets import seal, unseal
from defender.operations.health import email_addresses
from defender.services.addresses import host_refusal, metadata_hosts_allowed

if TYPE_CHECKING:
    _ModelForm = forms.ModelForm
else:
    _ModelForm = object

WEBHOOK = "notify_webhook_url"
WEBHOOK_KEPT_INPUT = "notify_webhook_url_kept"
MAX_EMAILS = 20
SAVED_WEBHOOK_HELP = "A webhook is saved (never shown). Leave blank to keep it; type a new URL to replace it."
KEPT_WEBHOOK_HELP = "The webhook URL you typed is kept (it is never shown): leave this blank to use it."
HTTPS_ONLY = "The webhook URL must start with https://: the URL and each notification would travel unencrypted."


class NotifyFieldsMixin(_ModelForm):
    """Mixed into an Integration ModelForm before it; ``keeping_user`` is who a typed webhook URL is kept for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields[WEBHOOK]
        field.widget = forms.PasswordInput(
            render_value=False, attrs={"autocomplete": "off", "placeholder": "https://hooks.slack.com/services/…"}
        )
        field.required = False
        self.has_saved_webhook = bool(self.instance.pk) and has_secret(self.instance, WEBHOOK)
        if self.has_saved_webhook:
            field.help_text = SAVED_WEBHOOK_HELP
            # Added here, not declared: the form's metaclass collects no fields from a mixin that is not a form.
            self.fields["forget_webhook"] = forms.BooleanField(
                label="Remove the saved webhook", required=False, help_text="Notifications then go by email only."
            )
        self.fields["notify_emails"].widget = forms.Textarea(
            attrs={"rows": 2, "placeholder": "soc@example.com, oncall@example.com"}
        )
        # Left out of a POST (a script, an older page): the integration keeps its number, a new one the default.
        self.fields["notify_after_failures"].required = False
        self.webhook_was_kept = False
        self._unseal_webhook()

    # --- a typed URL kept while the page comes back with errors ---

    def _keeping(self) -> tuple[int | None, str]:
        user = getattr(self, "keeping_user_id", None)
        return user, f"{type(self).__name__}:{self.instance.pk or 'new'}:webhook"

    def _unseal_webhook(self) -> None:
        user, form = self._keeping()
        if not self.is_bound or user is None or self.data.get(WEBHOOK):
            return
        token = self.data.get(WEBHOOK_KEPT_INPUT, "")
        url = unseal(token, user_id=user, form=form) if isinstance(token, str) and token else None
        if url is not None:
            data = self.data.copy()  # type: ignore[attr-defined]  # a QueryDict or a dict
            data[WEBHOOK] = url
            self.data = data
            self.webhook_was_kept = True

    @property
    def kept_webhook_token(self) -> str:
        user, form = self._keeping()
        url = self.data.get(WEBHOOK, "") if self.is_bound else ""
        if user is None or not isinstance(url, str) or not url or WEBHOOK in self.errors:
            return ""
        return seal(url, user_id=user, form=form)

    def full_clean(self) -> None:
        super().full_clean()
        if self.is_bound and self.errors and WEBHOOK in self.fields and self.kept_webhook_token:
            self[WEBHOOK].help_text = KEPT_WEBHOOK_HELP

    # --- validation ---

    def clean_notify_after_failures(self) -> int:
        number = self.cleaned_data.get("notify_after_failures")
        return int(number) if number is not None else int(self.instance.notify_after_failures or 3)

    def clean_notify_emails(self) -> str:
        addresses = email_addresses(self.cleaned_data.get("notify_emails") or "")
        if len(addresses) > MAX_EMAILS:
            raise forms.ValidationError(f"At most {MAX_EMAILS} addresses; use a mailing list for more.")
        validate = EmailValidator()
        wrong = []
        for address in addresses:
            try:
                validate(address)
            except forms.ValidationError:
                wrong.append(address)
        if wrong:
            shown = ", ".join(wrong[:3])[:200]
            raise forms.ValidationError(f"Not an email address: {shown}. Separate addresses with commas or lines.")
        return "\n".join(addresses)

    def clean_notify_webhook_url(self) -> str:
        url = (self.cleaned_data.get(WEBHOOK) or "").strip()
        if not url:
            return ""
        # Messages never repeat the URL: it is the webhook's credential.
        try:
            URLValidator(schemes=["https", "http"])(url)
            host = urlsplit(url).hostname or ""
        except (forms.ValidationError, ValueError):
            raise forms.ValidationError(
                "Not a valid URL: paste the whole webhook URL, starting with https://."
            ) from None
        if urlsplit(url).scheme != "https" and not settings.DEBUG:
            raise forms.ValidationError(HTTPS_ONLY)
        refusal = None if metadata_hosts_allowed() else host_refusal(host)
        if refusal:
            raise forms.ValidationError(refusal)
        return url

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if cleaned.get("forget_webhook"):
            cleaned[WEBHOOK] = ""
            # Set here too: construct_instance skips a blank field with a default that the POST left out.
            self.instance.notify_webhook_url = ""
        elif self.instance.pk and not cleaned.get(WEBHOOK) and WEBHOOK not in self.errors:
            # Blank on Edit keeps the saved webhook: construct_instance skips fields missing from cleaned_data.
            cleaned.pop(WEBHOOK, None)
        return cleaned
