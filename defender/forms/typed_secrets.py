"""A secret typed into a form that comes back with errors is kept, never sent back in clear.

The page carries it in a hidden field as a Fernet token (encrypted and authenticated with the field-encryption keys),
bound to the user and the form it was typed into and valid for a quarter of an hour. Fixing a port then does not mean
pasting the secret again, and the browser never holds the secret itself after the first POST.
"""

import json
from typing import TYPE_CHECKING

from cryptography.fernet import InvalidToken
from django import forms

from defender import encryption

KEEP_SECONDS = 15 * 60


def seal(secret: str, *, user_id: int | None, form: str) -> str:
    payload = json.dumps({"secret": secret, "user": user_id, "form": form})
    return encryption.fernet().encrypt(payload.encode()).decode()


def unseal(token: str, *, user_id: int | None, form: str) -> str | None:
    """The secret in ``token``, or None when it is forged, expired, or was typed by someone else or elsewhere."""
    try:
        payload = json.loads(encryption.fernet().decrypt(token.encode(), ttl=KEEP_SECONDS))
    except (InvalidToken, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or payload.get("user") != user_id or payload.get("form") != form:
        return None
    secret = payload.get("secret")
    return secret if isinstance(secret, str) and secret else None


if TYPE_CHECKING:
    # Type-checked as the ModelForm it is mixed into.
    _ModelForm = forms.ModelForm
else:
    _ModelForm = object


class KeepsTypedSecret(_ModelForm):
    """Form mixin: a blank secret field with a valid kept token counts as the secret typed before.

    The form takes ``user`` and sets ``kept_secret_field``; the template renders ``form.kept_secret_token`` into a
    hidden input named ``kept_secret_input``.
    """

    kept_secret_field = "client_secret"
    KEEP_WORDS = "The secret you typed is kept (it is never shown): leave this blank to use it, or type another."

    def keep_typed_secret(self, user) -> None:
        self.keeping_user_id = getattr(user, "pk", None)
        self.secret_was_kept = False
        if not self.is_bound or self.keeping_user_id is None:
            return
        token = self.data.get(self.kept_secret_input, "")
        if self.data.get(self.kept_secret_field) or not token:
            return
        secret = unseal(token, user_id=self.keeping_user_id, form=self._keeping_form())
        if secret is not None:
            # A QueryDict (immutable, as the request made it) or a dict; the stubs only know a Mapping.
            data = self.data.copy()  # type: ignore[attr-defined]
            data[self.kept_secret_field] = secret
            self.data = data
            self.secret_was_kept = True

    @property
    def kept_secret_input(self) -> str:
        return f"{self.kept_secret_field}_kept"

    def _keeping_form(self) -> str:
        return f"{type(self).__name__}:{self.instance.pk or 'new'}"

    @property
    def kept_secret_token(self) -> str:
        """The token to send back with the page, when a secret was typed (or kept) in this POST."""
        if not self.is_bound or getattr(self, "keeping_user_id", None) is None:
            return ""
        secret = self.data.get(self.kept_secret_field, "")
        if not isinstance(secret, str) or not secret:
            return ""
        return seal(secret, user_id=self.keeping_user_id, form=self._keeping_form())
