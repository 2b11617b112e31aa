"""Settings > Proxy Rules: the list, Add and Edit, the detail page with its integrations, Delete, and the Test."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.db.models import Count
from django.shortcuts import redirect
from django.urls import path, reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import CreateView, DeleteView, DetailView, FormView, UpdateView, View
from django.views.generic.detail import SingleObjectMixin
from django_tables2 import SingleTableView

from defender.forms.proxy_rules import ProxyAssignmentForm, ProxyRuleForm
from defender.models import ProxyRule
from defender.operations.checks import start_proxy_rule_test
from defender.tables.proxy_rules import ProxyRuleTable
from defender.views.test_runs import started

ROW_ACTION_PERMISSIONS = ("defender.change_proxyrule", "defender.delete_proxyrule")


class ProxyRuleListView(PermissionRequiredMixin, SingleTableView):
    permission_required = "defender.view_proxyrule"
    queryset = ProxyRule.objects.annotate(integration_count=Count("integrations")).order_by("name")
    table_class = ProxyRuleTable
    template_name = "defender/proxy_rules/list.html"
    paginate_by = 50

    def get_table_kwargs(self):
        if any(self.request.user.has_perm(permission) for permission in ROW_ACTION_PERMISSIONS):
            return {}
        return {"exclude": ("actions",)}


class ProxyRuleDetailView(PermissionRequiredMixin, DetailView):
    permission_required = "defender.view_proxyrule"
    model = ProxyRule
    template_name = "defender/proxy_rules/detail.html"
    context_object_name = "rule"

    def get_context_data(self, **kwargs):
        assignment = ProxyAssignmentForm(rule=self.object, user=self.request.user)
        return super().get_context_data(
            integrations=self.object.integrations.all(), assignment_form=assignment, **kwargs
        )


class ProxyRuleFormMixin(SuccessMessageMixin):
    model = ProxyRule
    # Typed as Django declares these, so that the views mixing this in agree with it.
    form_class: type[Any] | None = ProxyRuleForm
    template_name: str | None = "defender/proxy_rules/form.html"
    context_object_name: str | None = "rule"

    def get_success_url(self):
        return reverse("defender:proxyrule-detail", args=[self.object.pk])


# The typed secret stays out of error reports.
@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class ProxyRuleCreateView(PermissionRequiredMixin, ProxyRuleFormMixin, CreateView):
    permission_required = "defender.add_proxyrule"
    success_message = "Proxy rule %(name)s was added."


# The typed secret stays out of error reports.
@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class ProxyRuleUpdateView(PermissionRequiredMixin, ProxyRuleFormMixin, UpdateView):
    permission_required = "defender.change_proxyrule"
    success_message = "Proxy rule %(name)s was saved."

    def get_context_data(self, **kwargs):
        # Named before saving: whose client secrets an edit of this rule would move.
        return super().get_context_data(integrations=self.object.integrations.order_by("name"), **kwargs)


class ProxyRuleDeleteView(PermissionRequiredMixin, DeleteView):
    """Refused while integrations use the rule: they would silently start connecting directly, past the proxy."""

    permission_required = "defender.delete_proxyrule"
    model = ProxyRule
    template_name = "defender/proxy_rules/confirm_delete.html"
    context_object_name = "rule"
    success_url = reverse_lazy("defender:proxyrule-list")

    def get_context_data(self, **kwargs):
        return super().get_context_data(integrations=self.object.integrations.all(), **kwargs)

    def form_valid(self, form):
        if self.object.integrations.exists():
            messages.error(self.request, f"Proxy rule {self.object.name} is in use; assign its integrations elsewhere.")
            return self.render_to_response(self.get_context_data(form=form), status=409)
        messages.success(self.request, f"Proxy rule {self.object.name} was deleted.")
        return super().form_valid(form)


class ProxyAssignmentView(PermissionRequiredMixin, SingleObjectMixin, FormView):
    """Assign integrations to a rule from the rule's side (the integration form assigns from the other)."""

    permission_required = "defender.change_integration"
    model = ProxyRule
    form_class = ProxyAssignmentForm
    template_name = "defender/proxy_rules/assign.html"
    context_object_name = "rule"

    def get(self, request, *args, **kwargs):
        self.object = self.get_object()
        return super().get(request, *args, **kwargs)

    def post(self, request, *args, **kwargs):
        self.object = self.get_object()
        return super().post(request, *args, **kwargs)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "rule": self.object, "user": self.request.user}

    def form_valid(self, form):
        count = form.save()
        messages.success(self.request, f"Proxy rule {self.object.name} is used by {count} integration(s).")
        return redirect("defender:proxyrule-detail", pk=self.object.pk)


class ProxyRuleTestView(PermissionRequiredMixin, SingleObjectMixin, View):
    """Does the proxy answer, accept its credentials and open a tunnel? Nothing is stored."""

    permission_required = ("defender.view_proxyrule", "defender.run_test")
    http_method_names = ["post"]
    model = ProxyRule

    def post(self, request, *args, **kwargs):
        return started(request, start_proxy_rule_test(self.get_object(), request.user))


urlpatterns = [
    path("settings/proxy-rules/", ProxyRuleListView.as_view(), name="proxyrule-list"),
    path("settings/proxy-rules/add/", ProxyRuleCreateView.as_view(), name="proxyrule-add"),
    path("settings/proxy-rules/<int:pk>/", ProxyRuleDetailView.as_view(), name="proxyrule-detail"),
    path("settings/proxy-rules/<int:pk>/edit/", ProxyRuleUpdateView.as_view(), name="proxyrule-edit"),
    path("settings/proxy-rules/<int:pk>/delete/", ProxyRuleDeleteView.as_view(), name="proxyrule-delete"),
    path("settings/proxy-rules/<int:pk>/integrations/", ProxyAssignmentView.as_view(), name="proxyrule-assign"),
    path("settings/proxy-rules/<int:pk>/test/", ProxyRuleTestView.as_view(), name="proxyrule-test"),
]
