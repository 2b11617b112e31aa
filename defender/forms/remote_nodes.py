"""The remote node form: labels and help texts are the model's."""

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms

from defender.models import RemoteNode


class RemoteNodeForm(forms.ModelForm):
    class Meta:
        model = RemoteNode
        fields = ["name", "description", "poll_interval_seconds"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", "Submit"))
