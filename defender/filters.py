"""Filters of the stored alerts table; the CSV export applies the same ones, so it downloads what is shown."""

import django_filters
from django import forms

from defender.models import Alert


class AlertFilter(django_filters.FilterSet):
    severity = django_filters.MultipleChoiceFilter(
        choices=Alert.Severity.choices, widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"})
    )
    status = django_filters.MultipleChoiceFilter(
        choices=Alert.Status.choices, widget=forms.CheckboxSelectMultiple(attrs={"class": "form-check-input"})
    )

    class Meta:
        model = Alert
        fields = ["severity", "status"]

    @property
    def is_filtering(self):
        return self.is_bound and self.form.is_valid() and any(self.form.cleaned_data.get(name) for name in self.filters)
