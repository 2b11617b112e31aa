"""Settings > Integrations: the list, Add and Edit, the detail page, Delete, and the Test."""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import CreateView, DeleteView, DetailView, TemplateView, UpdateView, View
from django.views.generic.detail import SingleObjectMixin
from django_tables2 import SingleTableView

from defender.forms.integrations import IntegrationForm
from defender.kinds import KINDS
from defender.models import Integration
from defender.operations import health
from defender.operations.checks import start_integration_test, start_typed_test, typed_result_to_record
from defender.operations.records import record_test_result
from defender.presets import preset_data
from defender.tables.integrations import IntegrationTable
from defender.views.test_runs import PANEL, run_context, started

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise

ROW_ACTION_PERMISSIONS = ("defender.run_test", "defender.change_integration", "defender.delete_integration")


def home(request):
    return redirect("defender:integration-list")


class IntegrationListView(PermissionRequiredMixin, SingleTableView):
    permission_required = "defender.view_integration"
    queryset = Integration.objects.select_related("proxy_rule", "remote_node")
    table_class = IntegrationTable
    template_name = "defender/integrations/list.html"
    paginate_by = 50

    def get_table_kwargs(self):
        if any(self.request.user.has_perm(permission) for permission in ROW_ACTION_PERMISSIONS):
            return {}
        return {"exclude": ("actions",)}

    def get_context_data(self, **kwargs):
        return super().get_context_data(kinds=KINDS.values(), **kwargs)


class IntegrationKindChoiceView(PermissionRequiredMixin, TemplateView):
    """Add Integration without JavaScript: the dropdown's choices as a page."""

    permission_required = "defender.add_integration"
    template_name = "defender/integrations/choose_kind.html"

    def get_context_data(self, **kwargs):
        return super().get_context_data(kinds=KINDS.values(), **kwargs)


class IntegrationDetailView(PermissionRequiredMixin, DetailView):
    permission_required = "defender.view_integration"
    queryset = Integration.objects.select_related("proxy_rule", "remote_node", "created_by", "updated_by")
    template_name = "defender/integrations/detail.html"
    context_object_name = "integration"

    def get_context_data(self, **kwargs):
        integration = self.object
        return super().get_context_data(
            history=health.history(integration), schedule_minutes=health.schedule_minutes(integration), **kwargs
        )


class IntegrationFormMixin(SuccessMessageMixin):
    model = Integration
    # Typed as Django declares these, so that the views mixing this in agree with it.
    form_class: type[Any] | None = IntegrationForm
    template_name: str | None = "defender/integrations/form.html"
    success_url: "_StrOrPromise | None" = reverse_lazy("defender:integration-list")

    def get_form_kwargs(self):
        # The user a typed secret is kept for, when the page comes back with errors.
        return {**super().get_form_kwargs(), "user": self.request.user}

    def get_context_data(self, **kwargs):
        submit_url, test_url = self.form_urls()
        return super().get_context_data(presets=preset_data(), submit_url=submit_url, test_url=test_url, **kwargs)

    def form_valid(self, form):
        form.instance.updated_by = self.request.user
        # The Test last run on this form, recorded when it tested exactly the values saved now.
        tested = typed_result_to_record(self.request.session.pop(FORM_TEST_SESSION_KEY, None), form.values_digest())
        response = super().form_valid(form)
        if tested is not None:
            record_test_result(self.object, tested)
        for warning in (self.object.secret_expiry_warning, self.object.certificate_expiry_warning):
            if warning:
                # Saved as typed (the date may be what Entra ID shows), but the person must know it will not work.
                messages.warning(self.request, warning)
        return response


# The Test run last started on a form, so that Submit with the same values records it (the new row is not left
# "Never tested" after a Test that passed a moment before).
FORM_TEST_SESSION_KEY = "integration_form_test_run"


class FormTestMixin:
    """Test with the values as typed, before anything is saved: validate, run the steps, save nothing."""

    http_method_names: Sequence[str] = ("get", "post")

    def get(self, request, *args, **kwargs):
        # A Test is a POST; opening or reloading its address goes back to the form rather than to a blank 405.
        if "pk" in kwargs:
            self.object = self.get_object()
        return redirect(self.form_urls()[0])

    def form_valid(self, form):
        run = start_typed_test(form.instance, form.connection_settings, form.values_digest(), self.request.user)
        self.request.session[FORM_TEST_SESSION_KEY] = run.pk
        if self.request.htmx:
            return render(self.request, PANEL, run_context(run))
        # Without JavaScript the form comes back, as typed, with the run in its panel.
        form.ask_to_retype_secret()
        return self.render_to_response(self.get_context_data(form=form, **run_context(run)))

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if self.request.htmx:
            # The errors belong next to their fields: swap the whole form in place of the steps.
            response.template_name = "defender/integrations/_form.html"
            response["HX-Retarget"] = "#integration-form"
            response["HX-Reswap"] = "outerHTML"
        return response


# The typed secret and certificate stay out of error reports.
@method_decorator(sensitive_post_parameters("client_secret", "client_certificate"), name="dispatch")
class IntegrationCreateView(PermissionRequiredMixin, IntegrationFormMixin, CreateView):
    permission_required: str | Sequence[str] = "defender.add_integration"
    success_message = "Integration %(name)s was added."

    def get_form_kwargs(self):
        kind = KINDS.get(self.kwargs["kind"])
        if kind is None:
            raise Http404("No such integration type.")
        return {**super().get_form_kwargs(), "instance": Integration(kind=kind.key)}

    def form_urls(self):
        kind = self.kwargs["kind"]
        return reverse("defender:integration-add", args=[kind]), reverse("defender:integration-add-test", args=[kind])

    def form_valid(self, form):
        form.instance.created_by = self.request.user
        return super().form_valid(form)


class IntegrationCreateTestView(FormTestMixin, IntegrationCreateView):
    permission_required = ("defender.add_integration", "defender.run_test")


# The typed secret and certificate stay out of error reports.
@method_decorator(sensitive_post_parameters("client_secret", "client_certificate"), name="dispatch")
class IntegrationUpdateView(PermissionRequiredMixin, IntegrationFormMixin, UpdateView):
    permission_required: str | Sequence[str] = "defender.change_integration"
    queryset = Integration.objects.select_related("proxy_rule")
    success_message = "Integration %(name)s was saved."

    def form_urls(self):
        pk = self.object.pk
        return reverse("defender:integration-edit", args=[pk]), reverse("defender:integration-edit-test", args=[pk])


class IntegrationUpdateTestView(FormTestMixin, IntegrationUpdateView):
    permission_required = ("defender.change_integration", "defender.run_test")


class IntegrationDeleteView(PermissionRequiredMixin, SuccessMessageMixin, DeleteView):
    permission_required = "defender.delete_integration"
    model = Integration
    template_name = "defender/integrations/confirm_delete.html"
    context_object_name = "integration"
    success_url = reverse_lazy("defender:integration-list")

    def get_success_message(self, cleaned_data):
        return f"Integration {self.object.name} was deleted."

    def get_context_data(self, **kwargs):
        return super().get_context_data(alert_count=self.object.alerts_only_it_returned().count(), **kwargs)


class IntegrationTestView(PermissionRequiredMixin, SingleObjectMixin, View):
    """The Test of a saved integration; its outcome is stored, so the list's badge shows it."""

    permission_required = "defender.run_test"
    http_method_names = ["post"]
    queryset = Integration.objects.select_related("proxy_rule")

    def post(self, request, *args, **kwargs):
        return started(request, start_integration_test(self.get_object(), request.user))


urlpatterns = [
    path("", home, name="home"),
    path("settings/integrations/", IntegrationListView.as_view(), name="integration-list"),
    path("settings/integrations/add/", IntegrationKindChoiceView.as_view(), name="integration-choose-kind"),
    path("settings/integrations/add/<slug:kind>/", IntegrationCreateView.as_view(), name="integration-add"),
    path(
        "settings/integrations/add/<slug:kind>/test/", IntegrationCreateTestView.as_view(), name="integration-add-test"
    ),
    path("settings/integrations/<int:pk>/", IntegrationDetailView.as_view(), name="integration-detail"),
    path("settings/integrations/<int:pk>/edit/", IntegrationUpdateView.as_view(), name="integration-edit"),
    path(
        "settings/integrations/<int:pk>/edit/test/", IntegrationUpdateTestView.as_view(), name="integration-edit-test"
    ),
    path("settings/integrations/<int:pk>/delete/", IntegrationDeleteView.as_view(), name="integration-delete"),
    path("settings/integrations/<int:pk>/test/", IntegrationTestView.as_view(), name="integration-test"),
]
