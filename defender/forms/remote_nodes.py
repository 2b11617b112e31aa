from crispy_forms.helper import FormHelper
from crispy_forms.layout import Submit
from django import forms

from defender.models import RemoteNode


class RemoteNodeForm(forms.ModelForm):
    class Meta:
        model = RemoteNode
        fields = ["name", "description", "poll_interval_seconds"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        help_texts = {
            "name": "How this node is known here, e.g. the network it sits in: dmz-frankfurt.",
            "description": "Where the node runs and who looks after it.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.add_input(Submit("submit", "Submit"))
