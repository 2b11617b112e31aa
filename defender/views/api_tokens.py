"""Settings > API tokens: a user's own tokens for the REST API, created (shown once) and revoked."""

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views import View

from defender.api import tokens
from defender.models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use it, e.g. the Atomic Red Team runner.")


class ApiTokenListView(PermissionRequiredMixin, View):
    """Every user manages their own tokens, Viewers too (their tokens only read): a token may do what its user may."""

    permission_required = "defender.view_apitoken"

    def get(self, request, form=None, token=""):
        listed = ApiToken.objects.filter(user=request.user).order_by("-created_at")
        context = {"tokens": listed, "form": form or TokenForm(), "new_token": token}
        return render(request, "defender/api_tokens/list.html", context)

    def post(self, request):
        form = TokenForm(request.POST)
        if not form.is_valid():
            return self.get(request, form=form)
        record, token = tokens.issue(request.user, form.cleaned_data["name"])
        messages.success(request, f"Token {record.name} created: copy it now, it is not shown again.")
        return self.get(request, token=token)


class ApiTokenRevokeView(PermissionRequiredMixin, View):
    permission_required = "defender.view_apitoken"
    http_method_names = ["post"]

    def post(self, request, pk):
        record = get_object_or_404(ApiToken, pk=pk, user=request.user)
        tokens.revoke(record)
        messages.success(request, f"Token {record.name} revoked.")
        return redirect("defender:api-tokens")


urlpatterns = [
    path("settings/api-tokens/", ApiTokenListView.as_view(), name="api-tokens"),
    path("settings/api-tokens/<int:pk>/revoke/", ApiTokenRevokeView.as_view(), name="api-token-revoke"),
]
