"""A model field that keeps a secret encrypted in the database and out of forms, fixtures and reprs.

The database column holds only ciphertext. Reading the attribute decrypts on first access (so lists that never touch
the secret never decrypt), and a key that no longer fits raises an error naming the record and field. Forms never get
the value back: ``value_from_object`` returns an empty string, so an edit form cannot refill a secret.
"""

from django.db import models

from defender import encryption


class Ciphertext(str):
    """A value as loaded from the database: still encrypted."""

    def __repr__(self):
        return "<Ciphertext>"


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
            value = encryption.decrypt(value, where=where)
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance, value):
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
        # Read the raw slot, not the attribute: an unchanged secret is written back as the same ciphertext.
        return model_instance.__dict__.get(self.attname, "")

    def value_from_object(self, obj):
        return ""

    def value_to_string(self, obj):
        raw = obj.__dict__.get(self.attname, "")
        return str(raw) if isinstance(raw, Ciphertext) else ""


def has_secret(instance, field_name):
    """True when a secret is stored, without decrypting it."""
    return bool(instance.__dict__.get(instance._meta.get_field(field_name).attname))
