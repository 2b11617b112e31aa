"""Settings > Integrations: the list, Add and Edit, the detail page, Delete, and the Test."""

from dataclasses import asdict

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.contrib.messages.views import SuccessMessageMixin
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import path, reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import CreateView, DeleteView, DetailView, TemplateView, UpdateView, View
from django.views.generic.detail import SingleObjectMixin
from django_tables2 import SingleTableView

from defender.forms.integrations import IntegrationForm
from defender.kinds import KINDS
from defender.models import Integration, Job
from defender.presets import preset_data
from defender.remote import jobs
from defender.services.steps import NOT_TESTED, SKIPPED, Step, TestResult
from defender.tables.integrations import IntegrationTable
from defender.testing import record_test_result, steps_for
from defender.views.jobs import job_response

# The streamed Test ends each complete fragment with this marker; test-steps.js shows the page up to the last one.
FRAGMENT_END = "<!--/fragment-->\n"
ROW_ACTION_PERMISSIONS = ("defender.run_test", "defender.change_integration", "defender.delete_integration")


def home(request):
    return redirect("defender:integration-list")


def test_steps_response(request, steps, *, title, on_finish=None, template="defender/integrations/test.html", **ctx):
    """The Test's answer: streamed fragments for htmx and test-steps.js, else a whole page once every step is known.

    ``steps`` yields Step objects as they finish; ``on_finish`` receives the TestResult (to record it) and may return
    the object whose badge the page should update.
    """
    context = {"title": title, **ctx}
    if not request.htmx:
        result = TestResult(tuple(steps))
        subject = on_finish(result) if on_finish else None
        return render(request, template, {**context, "result": result, "integration": subject})

    def fragments():
        yield render_to_string("defender/integrations/_test_head.html", context, request) + FRAGMENT_END
        done = []
        for step in steps:
            done.append(step)
            yield render_to_string("defender/integrations/_test_step.html", {"step": step}, request) + FRAGMENT_END
        result = TestResult(tuple(done))
        subject = on_finish(result) if on_finish else None
        tail = {**context, "result": result, "integration": subject, "oob": subject is not None}
        yield render_to_string("defender/integrations/_test_tail.html", tail, request) + FRAGMENT_END

    response = StreamingHttpResponse(fragments(), content_type="text/html; charset=utf-8")
    # Proxies such as nginx would otherwise hold the steps back until the Test is over.
    response["X-Accel-Buffering"] = "no"
    response["Cache-Control"] = "no-store"
    return response


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


class IntegrationFormMixin(SuccessMessageMixin):
    model = Integration
    form_class = IntegrationForm
    template_name = "defender/integrations/form.html"
    success_url = reverse_lazy("defender:integration-list")

    def get_form_kwargs(self):
        # The user a typed secret is kept for, when the page comes back with errors.
        return {**super().get_form_kwargs(), "user": self.request.user}

    def get_context_data(self, **kwargs):
        submit_url, test_url = self.form_urls()
        return super().get_context_data(presets=preset_data(), submit_url=submit_url, test_url=test_url, **kwargs)

    def form_valid(self, form):
        form.instance.updated_by = self.request.user
        tested = recorded_form_test(self.request, form)
        response = super().form_valid(form)
        if tested is not None:
            record_test_result(self.object, tested)
        if warning := self.object.secret_expiry_warning:
            # Saved as typed (the date may be what Entra ID shows), but the person must know it will not work.
            messages.warning(self.request, warning)
        return response


# The last Test run on a form, remembered so that Submit with the same values records it (the new row is not left
# "Never tested" after a Test that passed a moment before).
FORM_TEST_SESSION_KEY = "integration_form_test"


def remember_form_test(request, form, result):
    if result.verdict == NOT_TESTED:
        return  # nothing to record: Submit leaves the row as it was
    request.session[FORM_TEST_SESSION_KEY] = {
        "values": form.values_digest(),
        "steps": [asdict(step) for step in result.steps],
    }
    # A streamed Test finishes after the response's session cookie was handled: store the session now.
    request.session.save()


def recorded_form_test(request, form):
    """The Test last run on this form with exactly these values, as a TestResult, or None."""
    remembered = request.session.pop(FORM_TEST_SESSION_KEY, None)
    if not isinstance(remembered, dict) or remembered.get("values") != form.values_digest():
        return None
    return TestResult(tuple(Step(**step) for step in remembered["steps"]))


class FormTestMixin:
    """Test with the values as typed, before anything is saved: validate, run the steps, save nothing."""

    http_method_names = ["get", "post"]

    def get(self, request, *args, **kwargs):
        # A Test is a POST; opening or reloading its address goes back to the form rather than to a blank 405.
        if "pk" in kwargs:
            self.object = self.get_object()
        return redirect(self.form_urls()[0])

    def form_valid(self, form):
        if not self.request.htmx:
            form.ask_to_retype_secret()
        if form.instance.location == Integration.Location.REMOTE:
            # The node runs saved integrations only: their settings, secret included, are sent when it claims a job.
            node = form.instance.remote_node
            steps = [
                Step(
                    "Remote node",
                    SKIPPED,
                    0,
                    f"Submit, then press Test: the Test of a Remote integration runs on node {node}, which takes only "
                    "saved integrations.",
                )
            ]
        else:
            steps = steps_for(form.connection_settings)
        return test_steps_response(
            self.request,
            steps,
            title=form.instance.name,
            template=self.template_name,
            on_finish=lambda result: remember_form_test(self.request, form, result),
            **self.get_context_data(form=form),
        )

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if self.request.htmx:
            # The errors belong next to their fields: swap the whole form in place of the steps.
            response.template_name = "defender/integrations/_form.html"
            response["HX-Retarget"] = "#integration-form"
            response["HX-Reswap"] = "outerHTML"
        return response


# The typed secret stays out of error reports.
@method_decorator(sensitive_post_parameters("client_secret"), name="dispatch")
class IntegrationCreateView(PermissionRequiredMixin, IntegrationFormMixin, CreateView):
    permission_required = "defender.add_integration"
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


# The typed secret stays out of error reports.
@method_decorator(sensitive_post_parameters("client_secret"), name="dispatch")
class IntegrationUpdateView(PermissionRequiredMixin, IntegrationFormMixin, UpdateView):
    permission_required = "defender.change_integration"
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
        return super().get_context_data(alert_count=self.object.alerts.count(), **kwargs)


class IntegrationTestView(PermissionRequiredMixin, SingleObjectMixin, View):
    """The Test of a saved integration; its outcome is stored, so the list's badge shows it."""

    permission_required = "defender.run_test"
    http_method_names = ["post"]
    queryset = Integration.objects.select_related("proxy_rule")

    def post(self, request, *args, **kwargs):
        integration = self.get_object()
        if integration.location == Integration.Location.REMOTE:
            # Queue it for the node and let the page poll: no worker waits here for the node to check in.
            return job_response(request, jobs.enqueue(integration, Job.Kind.TEST, user=request.user))

        def record(result):
            record_test_result(integration, result)
            return integration

        return test_steps_response(
            request,
            steps_for(integration.to_settings),
            title=integration.name,
            on_finish=record,
            back_links=[
                (integration.name, reverse("defender:integration-detail", args=[integration.pk])),
                ("All integrations", reverse("defender:integration-list")),
            ],
        )


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
