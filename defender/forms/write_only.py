"""A model form's secret field that is write-only: the console's forms and the admin's share it.

The secret is typed into a password input that never refills; left blank on Edit it keeps the stored secret; and a
kept secret still has to go where it was typed for (see defender.destinations), so a change that would send it
elsewhere asks for it again, next to the field, before anything is saved.
"""

from typing import TYPE_CHECKING, Any

from django import forms

from defender import destinations
from defender.fields import has_secret
from defender.forms import retype_message
from defender.services.client_certificate import CertificateProblem, parse_certificate_credential

if TYPE_CHECKING:
    # Type-checked as the ModelForm it is mixed into.
    _ModelForm = forms.ModelForm
else:
    _ModelForm = object


class WriteOnlySecretMixin(_ModelForm):
    """Mixed into a ``ModelForm`` before it: ``secret_field`` names the model's encrypted field, ``secret_noun`` how
    messages call it."""

    secret_field: str
    secret_noun: str
    # A new record needs its secret (an integration's client secret); an optional one (a proxy password) does not.
    secret_required = True
    # Shown instead of the field's help text while a secret is stored.
    saved_secret_help = "A value is saved. Leave blank to keep it; type a new value to replace it."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields[self.secret_field]
        field.widget = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
        field.required = self.secret_required and self.instance.pk is None
        if self.instance.pk and has_secret(self.instance, self.secret_field):
            field.help_text = self.saved_secret_help_text()

    def saved_secret_help_text(self) -> str:
        return self.saved_secret_help

    def secret_is_sent(self) -> bool:
        """Whether the stored secret goes anywhere with the values typed (a proxy password only with a username)."""
        return True

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.instance.pk and not cleaned.get(self.secret_field):
            # Blank on Edit keeps the stored secret: construct_instance skips fields missing from cleaned_data.
            cleaned.pop(self.secret_field, None)
        return cleaned

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # Django's hook after construct_instance, not in the stubs
        # The instance now holds what was typed. A kept secret must still go where it was typed for (Test and Get
        # alerts refuse it otherwise); ask for it here, where it can be typed, rather than fail later.
        reasons = destinations.retype_reasons(self.instance)
        if reasons and self.secret_is_sent():
            self.add_error(self.secret_field, retype_message(self.secret_noun, reasons))


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value: a pasted private key is not sent back with a page that has errors."""

    def format_value(self, value: Any) -> str | None:
        return None


CERTIFICATE_REQUIRED = "Paste or upload the PEM of the private key and its certificate."
CERTIFICATE_NOT_KEPT = "Paste or upload the certificate again: its private key is never sent back to the page."


class WriteOnlyCredentialMixin(WriteOnlySecretMixin):
    """An integration's credential, write-only: the client secret, or the client certificate (its private key and
    certificate as one PEM). Only the credential in use is required, and only it has to go where it was typed for;
    the certificate is checked (a readable key, and a certificate made with it) before anything is saved."""

    secret_field = "client_secret"
    secret_noun = "client secret"
    certificate_field = "client_certificate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        certificate = self.fields[self.certificate_field]
        certificate.widget = WriteOnlyTextarea(
            attrs={"rows": 4, "placeholder": "-----BEGIN PRIVATE KEY-----", "spellcheck": "false"}
        )
        certificate.required = False
        if self.instance.pk and has_secret(self.instance, self.certificate_field):
            certificate.help_text = (
                "A certificate is saved (shown below). Leave blank to keep it; paste or upload another to replace it."
            )
        # A form posted without the choice (a script, an older page) keeps to the client secret.
        self.fields["credential_type"].required = False
        # A new integration needs the secret only when it signs in with one.
        self.fields[self.secret_field].required = self.instance.pk is None and not self.certificate_chosen()

    def certificate_chosen(self) -> bool:
        choice = self.data.get("credential_type") if self.is_bound else self.initial.get("credential_type")
        return (choice or self.instance.credential_type) == "certificate"

    def clean_credential_type(self) -> str:
        return str(self.cleaned_data.get("credential_type") or self.instance.credential_type or "secret")

    def certificate_text(self, cleaned: dict[str, Any]) -> str:
        """The certificate as typed (the integration form adds an upload)."""
        return str(cleaned.get(self.certificate_field) or "")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        text = self.certificate_text(cleaned).strip()
        if text:
            try:
                credential = parse_certificate_credential(text)
            except CertificateProblem as problem:
                self.add_error(self.certificate_field, str(problem))
                return cleaned
            # Kept as the key (PKCS#8) and the one certificate made with it, whatever else was in the file.
            cleaned[self.certificate_field] = credential.private_key_pem + credential.certificate_pem
        else:
            cleaned.pop(self.certificate_field, None)
            if cleaned.get("credential_type") == "certificate" and not (
                self.instance.pk and has_secret(self.instance, self.certificate_field)
            ):
                self.add_error(self.certificate_field, CERTIFICATE_REQUIRED)
        return cleaned

    def _post_clean(self) -> None:
        # The secret mixin asks for the client secret again when it would be moved; here that is asked of the
        # credential in use only, since the other is not sent.
        super(WriteOnlySecretMixin, self)._post_clean()  # type: ignore[misc]  # Django's hook, not in the stubs
        field = self.instance.credential_field
        reasons = destinations.retype_reasons(self.instance, field)
        if reasons:
            noun = "client certificate" if field == self.certificate_field else self.secret_noun
            self.add_error(field, retype_message(noun, reasons))
