"""The Django admin lists every model; secrets are write-only there too, with the console's own form mixin (a password
input that never refills, and a kept secret follows the destination rule: see defender.destinations)."""

from django import forms
from django.contrib import admin
from django.utils import timezone

from defender import destinations
from defender.forms.health import NotifyFieldsMixin
from defender.forms.write_only import WriteOnlyCredentialMixin, WriteOnlySecretMixin
from defender.models import (
    Actor,
    ActorMachine,
    Alert,
    AlertFetch,
    AlertSource,
    ApiToken,
    Execution,
    Integration,
    Job,
    Procedure,
    ProcedureMatch,
    ProxyRule,
    RemoteNode,
    SyncState,
    TestRun,
    Worker,
)


class IntegrationAdminForm(NotifyFieldsMixin, WriteOnlyCredentialMixin, forms.ModelForm):
    """The client secret, the client certificate and the notification webhook, all write-only, as on the console's
    form."""

    def __init__(self, *args, **kwargs):
        self.keeping_user_id = None  # the admin sends no typed secret back
        super().__init__(*args, **kwargs)


class ProxyRuleAdminForm(WriteOnlySecretMixin, forms.ModelForm):
    secret_field = "password"
    secret_noun = "password"
    secret_required = False

    def secret_is_sent(self) -> bool:
        return bool(self.instance.username)  # without a username the password is never sent


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationAdminForm
    list_display = [
        "name",
        "kind",
        "location",
        "api_flavour",
        "host",
        "port",
        "enabled",
        "last_test_ok",
        "last_test_at",
        "health_state",
    ]
    list_filter = ["kind", "location", "api_flavour", "enabled"]
    search_fields = ["name", "host", "tenant_id", "client_id"]
    list_select_related = ["proxy_rule"]
    readonly_fields = [
        "created_by",
        "updated_by",
        "created_at",
        "updated_at",
        "last_test_at",
        "last_test_ok",
        "last_test_summary",
        "health_state",
        "consecutive_failures",
    ]


@admin.register(ProxyRule)
class ProxyRuleAdmin(admin.ModelAdmin):
    form = ProxyRuleAdminForm
    list_display = ["name", "proxy_type", "host", "port", "username"]
    search_fields = ["name", "host"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        names = [integration.name for integration in obj.integrations.order_by("name")] if obj else []
        if not names:
            return fieldsets
        # Said before saving, as on the console's Edit page: whose client secrets an edit here would move.
        description = (
            f"Used by {destinations.spoken_list(names)}. Changing the type, host, port, username, CA certificate or "
            "bypass hosts changes where their client secrets go: they must then be typed again."
        )
        (title, options), *rest = fieldsets
        return [(title, {**options, "description": description}), *rest]


@admin.register(Actor)
class ActorAdmin(admin.ModelAdmin):
    list_display = ["name", "hostname", "alternate_hostname", "ip_address", "operating_system"]
    search_fields = ["name", "hostname", "alternate_hostname"]
    list_filter = ["operating_system"]


class AlertSourceInline(admin.TabularInline):
    model = AlertSource
    extra = 0
    readonly_fields = ["integration", "first_seen_at", "last_seen_at"]
    can_delete = False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    inlines = [AlertSourceInline]
    list_display = ["title", "severity", "status", "created", "machine_name", "actor", "tenant_id"]
    list_filter = ["severity", "status", "integrations"]
    search_fields = ["title", "alert_id", "machine_name"]
    list_select_related = ["actor"]
    raw_id_fields = ["actor"]


@admin.register(AlertSource)
class AlertSourceAdmin(admin.ModelAdmin):
    list_display = ["alert", "integration", "first_seen_at", "last_seen_at"]
    list_select_related = ["alert", "integration"]
    raw_id_fields = ["alert", "integration"]


@admin.register(AlertFetch)
class AlertFetchAdmin(admin.ModelAdmin):
    list_display = ["actor", "integration", "asked_at", "ok", "alert_count"]
    list_select_related = ["actor", "integration"]


@admin.register(SyncState)
class SyncStateAdmin(admin.ModelAdmin):
    """Where each integration's sweep stands. Clearing the cursor makes the next sweep read the lookback window."""

    list_display = ["integration", "cursor", "last_finished_at", "last_ok", "claimed_at"]
    list_select_related = ["integration"]
    readonly_fields = ["claim", "claimed_at", "last_started_at", "last_finished_at", "last_ok", "last_summary"]


@admin.register(ActorMachine)
class ActorMachineAdmin(admin.ModelAdmin):
    """The Defender machine IDs learnt for each actor, which a sweep matches first; delete one to unlearn it."""

    list_display = ["actor", "tenant_id", "machine_id", "learnt_at"]
    list_select_related = ["actor"]
    search_fields = ["actor__name", "machine_id"]


@admin.register(RemoteNode)
class RemoteNodeAdmin(admin.ModelAdmin):
    """Tokens are issued and revoked on the node's page in the console; here only the hint and dates show."""

    list_display = ["name", "agent_version", "last_seen_at", "token_hint", "revoked_at"]
    readonly_fields = [
        "token_hint",
        "token_issued_at",
        "revoked_at",
        "last_seen_at",
        "last_seen_address",
        "agent_version",
    ]


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["pk", "kind", "integration", "state", "node", "created_at", "finished_at", "attempts"]
    list_filter = ["kind", "state"]
    list_select_related = ["integration", "node"]
    raw_id_fields = ["integration", "node", "requested_by"]


@admin.register(TestRun)
class TestRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "title", "subject", "verdict", "requested_by", "started_at", "finished_at"]
    list_filter = ["subject", "verdict"]
    list_select_related = ["requested_by"]
    raw_id_fields = ["integration", "proxy_rule", "requested_by", "job"]


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    """Workers record themselves; the admin only lists them."""

    list_display = ["hostname", "version", "concurrency", "pid", "started_at", "last_seen_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class ProcedureInline(admin.TabularInline):
    model = Procedure
    extra = 0
    fields = ["order", "technique_id", "name", "started_at", "stopped_at", "outcome", "override_outcome"]
    readonly_fields = ["outcome"]
    show_change_link = True


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    inlines = [ProcedureInline]
    list_display = ["__str__", "actor", "source", "imported_at", "imported_by", "evaluated_at"]
    list_filter = ["source"]
    search_fields = ["external_id", "target_host", "actor__name"]
    list_select_related = ["actor", "imported_by"]
    raw_id_fields = ["actor", "imported_by"]


@admin.register(Procedure)
class ProcedureAdmin(admin.ModelAdmin):
    list_display = ["technique_id", "name", "execution", "outcome", "evaluated_outcome", "window_closes_at"]
    list_filter = ["outcome", "evaluated_outcome"]
    search_fields = ["technique_id", "name", "execution__external_id"]
    list_select_related = ["execution"]
    raw_id_fields = ["execution", "override_by"]


@admin.register(ProcedureMatch)
class ProcedureMatchAdmin(admin.ModelAdmin):
    list_display = ["procedure", "alert", "reason", "prevented"]
    list_select_related = ["procedure", "alert"]
    raw_id_fields = ["procedure", "alert"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created by their users (Settings > API tokens); here they can be seen and revoked, never read."""

    list_display = ["name", "user", "hint", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    exclude = ["key_hash"]
    readonly_fields = ["user", "name", "hint", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
