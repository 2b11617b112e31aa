"""Executions: the procedures run on actors and what Defender did about each, imported, recorded and overridden."""

import csv
from collections.abc import Iterator

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.db.models import Count, Prefetch, Q
from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.views import View
from django.views.generic import DetailView
from django_filters.views import FilterView
from django_tables2 import SingleTableMixin

from defender.alert_export import _Echo, neutralise
from defender.filters import ExecutionFilter
from defender.forms.executions import AttireUploadForm, OutcomeOverrideForm, ProcedureRecordForm
from defender.models import Execution, Outcome, Procedure, ProcedureMatch
from defender.operations.executions import ExecutionRejected, import_attire, record_procedures
from defender.tables.executions import ExecutionTable


def with_outcome_counts(executions):
    """Each execution with its procedures counted per outcome, in the same query."""
    return executions.annotate(
        **{f"n_{o.value}": Count("procedures", filter=Q(procedures__outcome=o.value)) for o in Outcome}
    )


class ExecutionListView(PermissionRequiredMixin, SingleTableMixin, FilterView):
    permission_required = "defender.view_execution"
    table_class = ExecutionTable
    filterset_class = ExecutionFilter
    template_name = "defender/executions/list.html"

    def get_queryset(self):
        return with_outcome_counts(Execution.objects.select_related("actor", "imported_by"))


class ExecutionDetailView(PermissionRequiredMixin, DetailView):
    permission_required = "defender.view_execution"
    template_name = "defender/executions/detail.html"

    def get_queryset(self):
        matches = ProcedureMatch.objects.select_related("alert").order_by("alert__created", "pk")
        procedures = Procedure.objects.select_related("override_by").prefetch_related(Prefetch("matches", matches))
        return Execution.objects.select_related("actor", "imported_by").prefetch_related(
            Prefetch("procedures", procedures.order_by("order", "pk"))
        )

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if self.request.user.has_perm("defender.change_procedure"):
            context["override_form"] = OutcomeOverrideForm()
        return context


class ExecutionImportView(PermissionRequiredMixin, View):
    permission_required = "defender.add_execution"

    def get(self, request):
        return render(request, "defender/executions/import.html", {"form": AttireUploadForm()})

    def post(self, request):
        form = AttireUploadForm(request.POST, request.FILES)
        if form.is_valid() and form.cleaned_data["create_actors"] and not request.user.has_perm("defender.add_actor"):
            form.add_error("create_actors", "Creating actors needs the permission to add actors; ask an administrator.")
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = import_attire(
                    data["log"].read(),
                    user=request.user,
                    detection_window_minutes=data["detection_window_minutes"],
                    create_actors=data["create_actors"],
                )
            except ExecutionRejected as rejected:
                form.add_error("log", str(rejected))
            else:
                (messages.success if result.created else messages.warning)(request, result.summary)
                return redirect(result.execution)
        return render(request, "defender/executions/import.html", {"form": form})


class ProcedureRecordView(PermissionRequiredMixin, View):
    permission_required = "defender.add_execution"

    def get(self, request):
        form = ProcedureRecordForm(initial={"actor": request.GET.get("actor")})
        return render(request, "defender/executions/record.html", {"form": form})

    def post(self, request):
        form = ProcedureRecordForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            typed = {key: data[key] for key in ("technique_id", "name", "command", "started_at", "stopped_at")}
            try:
                result = record_procedures(
                    actor=data["actor"],
                    source=Execution.Source.MANUAL,
                    user=request.user,
                    detection_window_minutes=data["detection_window_minutes"],
                    procedures=[typed],
                )
            except ExecutionRejected as rejected:
                form.add_error(None, str(rejected))
            else:
                messages.success(request, f"Recorded {data['technique_id']} on {data['actor']}.")
                return redirect(result.execution)
        return render(request, "defender/executions/record.html", {"form": form})


class OutcomeOverrideView(PermissionRequiredMixin, View):
    """An administrator's outcome for a procedure, with the reason; an empty outcome gives the engine's back."""

    permission_required = "defender.change_procedure"
    http_method_names = ["post"]

    def post(self, request, pk, procedure_pk):
        procedure = get_object_or_404(Procedure.objects.select_related("execution"), pk=procedure_pk, execution_id=pk)
        form = OutcomeOverrideForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, f"{procedure}: {error}")
            return redirect(procedure.execution)
        outcome = form.cleaned_data["outcome"]
        procedure.set_override(outcome, form.cleaned_data["reason"].strip(), request.user)
        procedure.save(update_fields=["outcome", "override_outcome", "override_reason", "override_by", "override_at"])
        if outcome:
            messages.success(request, f"{procedure} is now {Outcome(outcome).label} (overridden).")
        else:
            messages.success(request, f"{procedure} shows the engine's outcome again.")
        return redirect(procedure.execution)


CSV_HEADER = [
    "Execution", "Actor", "Order", "Technique", "Procedure", "Started (UTC)", "Stopped (UTC)", "Outcome",
    "Overridden", "Override reason", "Why", "Matched alerts", "Command",
]  # fmt: skip


def _procedure_lines(procedures) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for procedure in procedures.iterator(chunk_size=500):
        matched = "; ".join(f"{m.alert.alert_id} ({m.reason})" for m in procedure.matches.all())
        cells = [
            str(procedure.execution),
            procedure.execution.actor.name,
            procedure.order,
            procedure.technique_id,
            procedure.name,
            procedure.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            procedure.stopped_at.strftime("%Y-%m-%d %H:%M:%S"),
            procedure.get_outcome_display(),
            "yes" if procedure.overridden else "",
            procedure.override_reason,
            procedure.outcome_note,
            matched,
            procedure.command,
        ]
        yield writer.writerow([neutralise(cell) for cell in cells])


class ProceduresCsvView(PermissionRequiredMixin, View):
    """The procedures of the executions the list shows (same filters), with their outcomes."""

    permission_required = "defender.view_execution"

    def get(self, request: HttpRequest) -> StreamingHttpResponse:
        executions = ExecutionFilter(request.GET, queryset=Execution.objects.all()).qs
        matches = ProcedureMatch.objects.select_related("alert").order_by("pk")
        procedures = (
            Procedure.objects.filter(execution__in=executions.values("pk"))
            .select_related("execution__actor")
            .prefetch_related(Prefetch("matches", matches))
            .order_by("execution__imported_at", "execution_id", "order", "pk")
        )
        response = StreamingHttpResponse(_procedure_lines(procedures), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="procedures.csv"'
        return response


urlpatterns = [
    path("executions/", ExecutionListView.as_view(), name="execution-list"),
    path("executions/import/", ExecutionImportView.as_view(), name="execution-import"),
    path("executions/record/", ProcedureRecordView.as_view(), name="procedure-record"),
    path("executions/procedures.csv", ProceduresCsvView.as_view(), name="procedures-csv"),
    path("executions/<int:pk>/", ExecutionDetailView.as_view(), name="execution-detail"),
    path(
        "executions/<int:pk>/procedures/<int:procedure_pk>/override/",
        OutcomeOverrideView.as_view(),
        name="procedure-override",
    ),
]
