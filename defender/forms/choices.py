"""Model choice fields that refuse a submitted id the database could not even look up.

Django looks a chosen id up as it was typed; an integer id past 64 bits makes SQLite (and PostgreSQL) fail the query
itself, so a form posted with ``proxy_rule=99999999999999999999999`` was a server error instead of a field error.
Every model choice field of the console is one of these.
"""

from typing import TYPE_CHECKING

from django import forms
from django.core.exceptions import ValidationError
from django.db import connections

INTEGER_FIELDS = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}


if TYPE_CHECKING:
    # Type-checked as the model choice field it is mixed into.
    _ModelChoiceField = forms.ModelChoiceField
else:
    _ModelChoiceField = object


class KeyRangeMixin(_ModelChoiceField):
    """Refuse, before any query, a submitted key outside the range of the key's database column."""

    def _out_of_range(self, value) -> bool:
        queryset = self.queryset
        assert queryset is not None  # every model choice field of the console is given one
        model = queryset.model
        key_field = model._meta.get_field(self.to_field_name) if self.to_field_name else model._meta.pk
        internal_type = key_field.get_internal_type()
        if internal_type not in INTEGER_FIELDS or isinstance(value, model):
            return False
        try:
            number = int(str(value).strip())
        except ValueError:
            return False  # not a number at all: Django's own checks refuse it with their message
        low, high = connections[queryset.db].ops.integer_field_range(internal_type)
        return (low is not None and number < low) or (high is not None and number > high)

    def _refuse(self, value):
        raise ValidationError(
            self.error_messages["invalid_choice"],
            code="invalid_choice",
            params={"value": str(value)[:40]},
        )


class ModelChoiceField(KeyRangeMixin, forms.ModelChoiceField):
    def to_python(self, value):
        if value not in self.empty_values and self._out_of_range(value):
            self._refuse(value)
        return super().to_python(value)


class ModelMultipleChoiceField(KeyRangeMixin, forms.ModelMultipleChoiceField):
    def _check_values(self, value):
        try:
            values = frozenset(value)
        except TypeError:
            return super()._check_values(value)  # Django's own "Enter a list of values."
        for each in values:
            if self._out_of_range(each):
                self._refuse(each)
        return super()._check_values(value)
