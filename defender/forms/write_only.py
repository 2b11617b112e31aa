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
