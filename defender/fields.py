"""Model fields: a secret kept encrypted in the database and out of forms, fixtures and reprs; PEM certificates kept
in one canonical form; JSON kept as the text it came as.

The secret's database column holds only ciphertext. Reading the attribute decrypts (so lists that never touch the
secret never decrypt), and a key that no longer fits raises an error naming the record and field. Forms never get the
value back: ``value_from_object`` returns an empty string, so an edit form cannot refill a secret.

A secret read from its record and assigned back (as ``full_clean`` and ``refresh_from_db`` do) stays the stored
ciphertext; only a new value assigned in code or typed in a form counts as typed (``is_typed``), which is when its
destination is recorded with it (see ``defender.destinations``).
"""

from django import forms
from django.db import models
from django.db.models.fields.json import JSONExact

from defender import encryption
from defender.certificates import normalise_pem


class Ciphertext(str):
    """A value as loaded from the database: still encrypted."""

    def __repr__(self):
        return "<Ciphertext>"


class Decrypted(str):
    """A secret as read from its record: the plaintext, remembering the ciphertext it came from."""

    def __new__(cls, value, ciphertext):
        decrypted = super().__new__(cls, value)
        decrypted.ciphertext = ciphertext
        return decrypted

    def __reduce__(self):
        return Decrypted, (str(self), self.ciphertext)

    def __repr__(self):
        return "<Decrypted secret>"


class EncryptedAttribute:
    def __init__(self, field):
        self.field = field

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        if self.field.attname not in instance.__dict__:
            # Deferred with .only()/.defer(): load the ciphertext like Django's own DeferredAttribute would.
            instance.refresh_from_db(fields=[self.field.attname])
        value = instance.__dict__.get(self.field.attname, "")
        if isinstance(value, Ciphertext):
            where = (
                f"{self.field.name} of {instance._meta.verbose_name} {instance.pk} ({getattr(instance, 'name', '')})"
            )
            # The slot keeps the ciphertext: what was read is not mistaken for a newly typed secret on save.
            return Decrypted(encryption.decrypt(value, where=where), value)
        return value

    def __set__(self, instance, value):
        if isinstance(value, Decrypted):
            value = value.ciphertext
        instance.__dict__[self.field.attname] = "" if value is None else value


class EncryptedTextField(models.TextField):
    descriptor_class = EncryptedAttribute

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs.setdefault("editable", True)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value, expression, connection):
        return Ciphertext(value) if value else ""

    def get_prep_value(self, value):
        if isinstance(value, Ciphertext):
            return str(value)
        if not value:
            return ""
        return encryption.encrypt(value)

    def pre_save(self, model_instance, add):
        # Read the raw slot, not the attribute: an unchanged secret is written back as the same ciphertext. A typed
        # one is encrypted here and kept as ciphertext, so the saved instance behaves like one loaded from the table.
        raw = model_instance.__dict__.get(self.attname, "")
        if raw and not isinstance(raw, Ciphertext):
            raw = Ciphertext(encryption.encrypt(raw))
            model_instance.__dict__[self.attname] = raw
        return raw

    def value_from_object(self, obj):
        return ""

    def value_to_string(self, obj):
        raw = obj.__dict__.get(self.attname, "")
        return str(raw) if isinstance(raw, Ciphertext) else ""


def has_secret(instance, field_name):
    """True when a secret is stored, without decrypting it."""
    return bool(instance.__dict__.get(instance._meta.get_field(field_name).attname))


def is_typed(instance, field_name):
    """True when the secret was assigned in this process (typed in a form, or set in code) and not yet saved; False
    when it is the one loaded from the record (or not loaded at all)."""
    attname = instance._meta.get_field(field_name).attname
    return attname in instance.__dict__ and not isinstance(instance.__dict__[attname], Ciphertext)


class CertificatesFormField(forms.CharField):
    """A textarea of PEM certificates, cleaned to the canonical form (so CRLF from the browser is no change)."""

    def to_python(self, value):
        return normalise_pem(super().to_python(value))


class CertificatesField(models.TextField):
    """PEM certificates (a CA bundle), stored canonical: each certificate re-encoded, LF line endings, nothing
    between them. Text that does not parse is kept (trimmed, LF) for the validator to explain."""

    def to_python(self, value):
        return normalise_pem(super().to_python(value))

    def pre_save(self, model_instance, add):
        value = normalise_pem(getattr(model_instance, self.attname))
        setattr(model_instance, self.attname, value)
        return value

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": CertificatesFormField, **kwargs})


class StoredJSONField(models.JSONField):
    """JSON kept as its text (PostgreSQL's ``json``, not ``jsonb``), for values only ever read whole: an alert's raw
    answer, its evidence and its techniques. Storing 10,000 alerts spent a quarter of its time in PostgreSQL
    building jsonb's binary form of JSON that is never queried by key; ``json`` only checks that the text is JSON.
    Elsewhere the column is the same as a JSONField's (SQLite keeps JSON as text already)."""

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)


@StoredJSONField.register_lookup
class StoredJSONExact(JSONExact):
    """``field=value`` as on a JSONField: PostgreSQL compares json only once it is jsonb (json has no equality)."""

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"({lhs})::jsonb = {rhs}", (*lhs_params, *rhs_params)


def json_as_text(sender, connection, **kwargs):
    """connection_created: psycopg hands a json column over as text, for the field to decode, as Django has it do for
    jsonb (decoded twice, a JSON string would come back as what it spells)."""
    if connection.vendor == "postgresql":
        from psycopg.types.string import TextLoader

        connection.connection.adapters.register_loader("json", TextLoader)
