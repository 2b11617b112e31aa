"""The integration data model: integrations, the proxy rules they may use, and the actors whose alerts they fetch."""

import re
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Coalesce, Lower
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from defender import destinations, encryption, enums, presets, validators
from defender.fields import CertificatesField, EncryptedTextField, StoredJSONField, has_secret
from defender.kinds import DEFENDER_ATP, KIND_CHOICES
from defender.services.client_certificate import parse_certificate_credential
from defender.services.connection import ConnectionSettings, ProxySettings, bare_host, split_host_list


class ProxyRule(models.Model):
    ProxyType = enums.ProxyType

    name = models.CharField(
        max_length=100, unique=True, help_text="How integrations refer to this proxy, e.g. Corporate proxy."
    )
    proxy_type = models.CharField(
        "type",
        max_length=10,
        choices=enums.choices(ProxyType),
        default=ProxyType.HTTP.value,
        help_text="HTTP and HTTPS proxies tunnel with CONNECT; SOCKS5 resolves names at the proxy.",
    )
    host = models.CharField(
        max_length=253,
        validators=[validators.validate_host],
        help_text="The proxy's host name or IP address, without a scheme.",
    )
    port = models.PositiveIntegerField(
        default=3128, validators=[validators.validate_port], help_text="Often 3128 or 8080 for HTTP, 1080 for SOCKS5."
    )
    username = models.CharField(max_length=255, blank=True, help_text="Leave empty for a proxy without authentication.")
    password = EncryptedTextField(help_text="Stored encrypted; never shown again.")
    # Where the password was typed for (see defender.destinations); set when a password is saved.
    password_destination = models.JSONField(default=dict, blank=True, editable=False)
    ca_certificate = CertificatesField(
        "CA certificate",
        blank=True,
        validators=[validators.validate_pem_certificates],
        help_text="PEM of the proxy's CA, for a TLS-intercepting proxy.",
    )
    bypass_hosts = models.TextField(
        blank=True,
        help_text="Hosts that do not go through the proxy, one per line or comma-separated; .example.com matches "
        "every host under example.com.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        kwargs["update_fields"] = destinations.record_typed_secret(self, kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    @property
    def has_password(self):
        return has_secret(self, "password")

    def bypass_list(self):
        return split_host_list(self.bypass_hosts)

    def tunnel_targets(self):
        """Where this rule's integrations go through it, (host, port) in order: each one's sign-in host, then its API
        host; hosts on the bypass list are left out, since their traffic never reaches the proxy."""
        from urllib.parse import urlsplit

        route = ProxySettings(self.proxy_type, self.host, self.port, bypass_hosts=self.bypass_list())
        targets = []
        for integration in self.integrations.order_by("name"):
            auth = urlsplit(integration.auth_url)
            for host, port in ((auth.hostname, auth.port or 443), (integration.host, integration.port)):
                if host and not route.bypasses(host):
                    targets.append((bare_host(host), port))
        return list(dict.fromkeys(targets))

    def to_settings(self):
        """The plain proxy settings the services take (decrypts the password, if it may go to this proxy)."""
        password = self.password
        destinations.check_before_sending(self, password)
        return ProxySettings(
            proxy_type=self.proxy_type,
            host=self.host,
            port=self.port,
            username=self.username,
            password=str(password),
            ca_certificate=self.ca_certificate,
            bypass_hosts=self.bypass_list(),
        )


class HealthState(models.TextChoices):
    UNKNOWN = "unknown", "Not tested"
    UP = "up", "Up"
    DOWN = "down", "Down"


class Integration(models.Model):
    HealthState = HealthState

    class Location(models.TextChoices):
        LOCAL = "local", "Local"
        REMOTE = "remote", "Remote"

    class Protocol(models.TextChoices):
        HTTPS = "https", "HTTPS"
        HTTP = "http", "HTTP"

    Flavour = enums.ApiFlavour

    class CredentialType(models.TextChoices):
        SECRET = "secret", "Secret"
        CERTIFICATE = "certificate", "Certificate"

    name = models.CharField(
        max_length=100, unique=True, help_text="How this integration is called in the console, e.g. Defender EU."
    )
    kind = models.CharField("type", max_length=40, choices=KIND_CHOICES, default=DEFENDER_ATP.key)
    location = models.CharField(
        max_length=10,
        choices=Location.choices,
        default=Location.LOCAL,
        help_text="Local: this site calls Defender itself. Remote: a remote node does, from its network.",
    )
    remote_node = models.ForeignKey(
        "RemoteNode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="integrations",
        help_text="For Remote: the node inside the network that reaches Defender runs the Test and alert lookups.",
    )
    api_flavour = models.CharField(
        "API flavour",
        max_length=10,
        choices=enums.choices(Flavour),
        default=Flavour.MDE.value,
        help_text="Which Microsoft API to read alerts from.",
    )
    host = models.CharField(
        max_length=253,
        validators=[validators.validate_host],
        help_text="The API host for your tenant's region, without https://.",
    )
    port = models.PositiveIntegerField(
        default=443,
        validators=[validators.validate_port],
        help_text="443 unless your network routes the API elsewhere.",
    )
    protocol = models.CharField(
        max_length=5, choices=Protocol.choices, default=Protocol.HTTPS, help_text="HTTPS; HTTP only for a test server."
    )
    client_id = models.CharField(
        "client ID",
        max_length=36,
        validators=[validators.validate_guid],
        help_text="The application (client) ID of the app registration.",
    )
    # "Client Secret" and "API Version" are capitalised as the product's own form has them.
    client_secret = EncryptedTextField(
        "Client Secret",
        help_text="The secret's Value from Certificates & secrets (not its Secret ID). Stored encrypted.",
    )
    # Where the client secret was typed for (see defender.destinations); set when a secret is saved.
    client_secret_destination = models.JSONField(default=dict, blank=True, editable=False)
    credential_type = models.CharField(
        "credential",
        max_length=12,
        choices=CredentialType.choices,
        default=CredentialType.SECRET,
        help_text="How the app proves itself to Entra ID: a client secret, or a certificate uploaded to the app "
        "registration.",
    )
    client_certificate = EncryptedTextField(
        "Client certificate",
        help_text="The PEM of the private key and its certificate together (the certificate uploaded under "
        "Certificates & secrets). Stored encrypted; the key is never shown.",
    )
    # Where the client certificate was typed for, as for the secret.
    client_certificate_destination = models.JSONField(default=dict, blank=True, editable=False)
    secret_expires_on = models.DateField(
        "secret expiry date",
        null=True,
        blank=True,
        help_text="From Certificates & secrets; the console warns before the secret expires.",
    )
    api_version = models.CharField(
        "API Version",
        max_length=20,
        blank=True,
        default="v1.0",
        validators=[validators.validate_api_version],
        help_text="Current by default (v1.0).",
    )
    auth_url = models.CharField(
        "Auth URL",
        max_length=300,
        default=presets.PUBLIC_LOGIN,
        validators=[validators.validate_https_url],
        help_text="Where tokens come from; right for the public cloud by default.",
    )
    tenant_id = models.CharField(
        "tenant ID",
        max_length=253,
        validators=[validators.validate_tenant],
        help_text="The directory (tenant) ID GUID, or a verified domain.",
    )
    resource = models.CharField(
        max_length=300,
        blank=True,
        help_text="Needed for the legacy SIEM API (https://graph.windows.net); filled in for the others.",
    )
    # Advanced options
    connect_timeout = models.FloatField(
        "connect timeout (seconds)",
        default=5.0,
        validators=[validators.validate_timeout],
        help_text="How long to wait for a connection. Default 5.",
    )
    read_timeout = models.FloatField(
        "read timeout (seconds)",
        default=30.0,
        validators=[validators.validate_timeout],
        help_text="How long to wait for an answer. Default 30.",
    )
    verify_tls = models.BooleanField(
        "verify TLS", default=True, help_text="Check the API's certificate. Turn off only to diagnose."
    )
    ca_certificate = CertificatesField(
        "CA certificate",
        blank=True,
        validators=[validators.validate_pem_certificates],
        help_text="Paste a PEM to trust a private CA or a TLS-intercepting proxy.",
    )
    max_retries = models.PositiveSmallIntegerField(
        "maximum retries",
        default=3,
        validators=[validators.validate_retries],
        help_text="Retries after 429 or 5xx answers, honouring Retry-After. Default 3.",
    )
    page_size = models.PositiveIntegerField(
        default=1000,
        validators=[validators.validate_page_size],
        help_text="Alerts per request; the API allows up to 10,000. Default 1000.",
    )
    lookback_hours = models.PositiveIntegerField(
        "lookback window (hours)",
        default=24,
        validators=[validators.validate_lookback],
        help_text="How far back to ask for alerts. Default 24 hours.",
    )
    clock_skew_seconds = models.PositiveIntegerField(
        "clock-skew tolerance (seconds)",
        default=300,
        validators=[validators.validate_clock_skew],
        help_text="Drift allowed between this site's clock and Defender's. Default 300.",
    )
    proxy_rule = models.ForeignKey(
        ProxyRule,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="integrations",
        verbose_name="proxy",
        help_text="Send this integration's traffic through a proxy rule.",
    )
    cloud = models.CharField(
        max_length=20,
        blank=True,
        choices=presets.CLOUDS,
        default=presets.COMMERCIAL,
        help_text=(
            "Set by the region preset; decides the portal the alerts link to (GCC High and DoD share a host). "
            "Empty: read from the host."
        ),
    )
    graph_all_products = models.BooleanField(
        "all Defender products (Graph)",
        default=False,
        help_text=(
            "Microsoft Graph only: also read the alerts of Defender for Office 365, Identity and Cloud Apps. "
            "Off: only Defender for Endpoint's, filtered at the server."
        ),
    )
    # The call budget of this app and tenant; the integrations sharing one keep to the smallest (services/budget.py).
    calls_per_minute = models.PositiveIntegerField(
        "call budget per minute",
        null=True,
        blank=True,
        validators=[validators.validate_calls_per_minute],
        help_text=(
            "Calls a minute this app may make to this tenant's API, shared by every worker. Blank: Microsoft's limit "
            "(100; Graph 150)."
        ),
    )
    calls_per_hour = models.PositiveIntegerField(
        "call budget per hour",
        null=True,
        blank=True,
        validators=[validators.validate_calls_per_hour],
        help_text="Calls an hour, likewise. Blank: Microsoft's limit (1,500; Graph none).",
    )
    detection_window_minutes = models.PositiveIntegerField(
        "detection window (minutes)",
        default=60,
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text=(
            "How long after a procedure stops Defender may take to report it, before it counts as Missed. "
            "An import may set its own. Default 60."
        ),
    )
    enabled = models.BooleanField(default=True, help_text="Disabled integrations are not asked for alerts.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    last_test_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_test_ok = models.BooleanField(null=True, blank=True, editable=False)
    last_test_summary = models.TextField(blank=True, editable=False)
    last_test_steps = models.JSONField(default=list, blank=True, editable=False)
    # Scheduled health checks ("Operational Status"): the schedule itself is a django-celery-beat periodic task.
    health_check = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    # The alert sweep's schedule (defender.operations.sync), a periodic task like the health check's.
    sync_schedule = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    notify_after_failures = models.PositiveSmallIntegerField(
        "notify after failures",
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Tests failed in a row before the integration counts as down and a notification goes out.",
    )
    notify_emails = models.TextField(
        "notify by email",
        blank=True,
        help_text="Addresses told when the integration goes down and when it recovers, one per line or comma "
        "separated.",
    )
    notify_webhook_url = EncryptedTextField(
        "notify by webhook",
        help_text="A Slack or Microsoft Teams incoming webhook (or any URL taking a JSON POST). Stored encrypted: "
        "such a URL is its own credential.",
    )
    health_state = models.CharField(
        max_length=8, choices=HealthState.choices, default=HealthState.UNKNOWN, editable=False
    )
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("run_test", "Can run an integration's Test")]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        kwargs["update_fields"] = destinations.record_typed_secret(self, kwargs.get("update_fields"))
        super().save(*args, **kwargs)

    @property
    def has_client_secret(self):
        return has_secret(self, "client_secret")

    @property
    def has_client_certificate(self):
        return has_secret(self, "client_certificate")

    @property
    def uses_certificate(self):
        return self.credential_type == self.CredentialType.CERTIFICATE

    @property
    def credential_field(self):
        """The encrypted field holding the credential this integration signs in with."""
        return "client_certificate" if self.uses_certificate else "client_secret"

    @property
    def has_credential(self):
        return has_secret(self, self.credential_field)

    @property
    def certificate(self):
        """What may be shown of the saved (or typed) client certificate: subject, thumbprints, validity; never the
        key. None when there is none, or it cannot be read."""
        if not self.has_client_certificate:
            return None
        try:
            return parse_certificate_credential(str(self.client_certificate))
        except (ValueError, encryption.DecryptionError):
            return None

    @property
    def certificate_expiry_warning(self):
        """What to say before Entra ID refuses the certificate, as for the secret (30 days ahead), or ""."""
        certificate = self.certificate if self.uses_certificate else None
        if certificate is None:
            return ""
        days = certificate.days_left()
        if days > self.SECRET_WARNING_DAYS:
            return ""
        if days < 0:
            return (
                f"The client certificate expired on {certificate.not_after:%Y-%m-%d}: Entra ID refuses it, so the "
                "Test and alert lookups will fail. Upload a new one to the app registration and enter it."
            )
        when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        return (
            f"The client certificate expires {when} ({certificate.not_after:%Y-%m-%d}): upload a new one to the app "
            "registration and enter it in time."
        )

    SECRET_WARNING_DAYS = 30

    @property
    def secret_days_left(self):
        """Days until the client secret expires (negative once expired), or None when no expiry date is set."""
        if self.secret_expires_on is None:
            return None
        return (self.secret_expires_on - timezone.localdate()).days

    @property
    def secret_expiry_warning(self):
        """What to tell the person before Entra ID starts refusing the secret (AADSTS7000222), or ""."""
        days = self.secret_days_left
        if days is None or days > self.SECRET_WARNING_DAYS:
            return ""
        if days < 0:
            return (
                f"The client secret expired on {self.secret_expires_on:%Y-%m-%d}: Entra ID refuses it, so the Test "
                "and alert lookups will fail. Create a new one and enter it."
            )
        when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
        return f"The client secret expires {when} ({self.secret_expires_on:%Y-%m-%d}): create a new one in time."

    def clean(self):
        from django.core.exceptions import ValidationError

        if self.api_flavour == self.Flavour.SIEM and not self.resource:
            raise ValidationError({"resource": "The legacy SIEM API needs a resource, e.g. https://graph.windows.net."})

    @property
    def secret_destination_warning(self):
        """What to tell the person when the saved credential would be refused because its destination changed, or
        ""."""
        reasons = destinations.retype_reasons(self, self.credential_field)
        noun = "client certificate" if self.uses_certificate else "client secret"
        if not reasons:
            return ""
        if reasons == [destinations.NOT_RECORDED]:
            return f"Type the {noun} again on the Edit page: no destination is recorded for the saved one."
        return (
            f"Type the {noun} again on the Edit page: since it was typed, {destinations.spoken_list(reasons)} "
            f"changed, and a saved {noun.removeprefix('client ')} only goes where it went before."
        )

    def alerts_only_it_returned(self):
        """The stored alerts no other integration returned: those deleting this integration deletes."""
        return self.alerts.exclude(sources__integration__in=Integration.objects.exclude(pk=self.pk))

    def to_settings(self) -> ConnectionSettings:
        """The plain connection settings the services take: decrypts the secret, and refuses (with
        SecretDestinationChanged) when it or the proxy's password would go elsewhere than where it was typed for.
        Every path that sends a secret builds its settings here."""
        # Only the credential in use is decrypted and sent; it must go where it was typed for.
        field = self.credential_field
        credential = getattr(self, field)
        destinations.check_before_sending(self, credential, field)
        secret, certificate = ("", str(credential)) if self.uses_certificate else (str(credential), "")
        proxy = self.proxy_rule.to_settings() if self.proxy_rule is not None else None
        return ConnectionSettings(
            flavour=enums.ApiFlavour(self.api_flavour),
            host=self.host,
            port=self.port,
            protocol=self.protocol,
            client_id=self.client_id,
            client_secret=secret,
            client_certificate=certificate,
            tenant_id=self.tenant_id,
            auth_url=self.auth_url,
            api_version=self.api_version,
            resource=self.resource,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            verify_tls=self.verify_tls,
            ca_certificate=self.ca_certificate,
            max_retries=self.max_retries,
            page_size=self.page_size,
            lookback_hours=self.lookback_hours,
            clock_skew_seconds=self.clock_skew_seconds,
            proxy=proxy,
            name=self.name,
            integration_id=self.pk,
            cloud=self.cloud,
            graph_all_products=self.graph_all_products,
            **self.call_budget(),
        )

    def sharing_budget(self) -> "models.QuerySet[Integration]":
        """The integrations whose calls take from the same budget as this one's: the same app, tenant and API."""
        return Integration.objects.filter(
            client_id__iexact=self.client_id.strip(),
            tenant_id__iexact=self.tenant_id.strip(),
            api_flavour=self.api_flavour,
        )

    def call_budget(self) -> dict[str, int | None]:
        """The smallest limits set on this integration or any sharing its budget (None: Microsoft's)."""
        limits = (
            self.sharing_budget()
            .exclude(pk=self.pk)
            .aggregate(minute=models.Min("calls_per_minute"), hour=models.Min("calls_per_hour"))
        )
        return {
            "calls_per_minute": _smallest(self.calls_per_minute, limits["minute"]),
            "calls_per_hour": _smallest(self.calls_per_hour, limits["hour"]),
        }


def _smallest(*limits: int | None) -> int | None:
    """The smallest limit set, or None when none is."""
    return min((limit for limit in limits if limit), default=None)


class Actor(models.Model):
    class OperatingSystem(models.TextChoices):
        WINDOWS = "windows", "Windows"
        LINUX = "linux", "Linux"
        MACOS = "macos", "macOS"

    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(
        max_length=253,
        validators=[validators.validate_hostname_or_fqdn],
        help_text="As the endpoint knows itself: a short name (ws-fin-07) or an FQDN. Matched case-insensitively.",
    )
    alternate_hostname = models.CharField(
        max_length=253,
        blank=True,
        validators=[validators.validate_hostname_or_fqdn],
        help_text="Another name Defender may know this endpoint by (after a rename, or a different domain).",
    )
    ip_address = models.GenericIPAddressField("IP address", null=True, blank=True)
    operating_system = models.CharField(max_length=10, choices=OperatingSystem.choices, default=OperatingSystem.WINDOWS)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Kept by whatever inserts, moves or deletes alerts (defender.alert_store), so the Actors list reads a number
    # instead of counting a million rows for 25 actors.
    alert_count = models.PositiveIntegerField("stored alerts", default=0, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("fetch_alerts", "Can ask integrations for an actor's alerts")]
        indexes = [
            models.Index(Lower("hostname"), name="actor_hostname_ci"),
            models.Index(Lower("alternate_hostname"), name="actor_alt_hostname_ci"),
        ]

    def __str__(self):
        return self.name

    def hostnames(self) -> list[str]:
        """The names to match alerts against: hostname first, then the alternate."""
        return [name for name in (self.hostname, self.alternate_hostname) if name]


def recount_alerts(actor_ids) -> None:
    """Count the stored alerts of these actors again, from their rows: after a delete, whatever deleted them (an
    integration's orphans, the admin's actions), the counts are right even when two deletes ran at once."""
    per_actor = Alert.objects.filter(actor=models.OuterRef("pk")).order_by().values("actor")
    counted = per_actor.annotate(n=models.Count("pk")).values("n")
    Actor.objects.filter(pk__in=list(actor_ids)).update(alert_count=Coalesce(models.Subquery(counted[:1]), 0))


class AlertQuerySet(models.QuerySet):
    def delete(self):
        """Delete, and count the actors' alerts again (Actor.alert_count)."""
        with transaction.atomic():
            actor_ids = set(self.order_by().values_list("actor_id", flat=True).distinct())
            deleted = super().delete()
            recount_alerts(actor_ids)
        return deleted

    delete.alters_data = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class Alert(models.Model):
    """An alert Defender raised on an actor, as last fetched. Sorting, filtering and export read these rows, so they
    never call Defender again; the next Get alerts updates a row in place when Defender changed the alert."""

    class Severity(models.TextChoices):
        HIGH = "High", "High"
        MEDIUM = "Medium", "Medium"
        LOW = "Low", "Low"
        INFORMATIONAL = "Informational", "Informational"
        UNSPECIFIED = "Unspecified", "Unspecified"

    class Status(models.TextChoices):
        NEW = "New", "New"
        IN_PROGRESS = "InProgress", "In progress"
        RESOLVED = "Resolved", "Resolved"
        # The SIEM exporter sends no status: shown as what it is, not as a status Defender reported.
        UNKNOWN = "Unknown", "Not reported"

    # Sorting by severity means by rank: alphabetically, High would sit between Informational and Low.
    SEVERITY_RANKS = {
        Severity.HIGH: 4,
        Severity.MEDIUM: 3,
        Severity.LOW: 2,
        Severity.INFORMATIONAL: 1,
        Severity.UNSPECIFIED: 0,
    }

    # One alert of a tenant, whichever integrations returned it (a Defender API, a Graph and a SIEM integration of
    # one tenant see the same alert ID): it names each of them through AlertSource.
    tenant_id = models.CharField(
        "tenant ID", max_length=100, default="", help_text="The tenant of the integrations that sent it."
    )
    integrations = models.ManyToManyField(Integration, through="AlertSource", related_name="alerts")
    # No index of its own: every sort index below starts with the actor, and each index costs every stored alert.
    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="alerts", db_index=False)
    alert_id = models.CharField("alert ID", max_length=200)
    title = models.CharField(max_length=500)
    severity = models.CharField(max_length=20, choices=Severity.choices, default=Severity.UNSPECIFIED)
    severity_rank = models.PositiveSmallIntegerField(default=0)
    # How complete this copy is: 0 the SIEM exporter's (no status, activity times, classification or detection
    # status), 1 the Defender API's or Graph's. A poorer copy never replaces a richer one (alert_store.py).
    detail_rank = models.PositiveSmallIntegerField(default=1)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNKNOWN)
    category = models.CharField(max_length=100, blank=True)
    detection_source = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    first_event = models.DateTimeField(null=True, blank=True)
    last_event = models.DateTimeField(null=True, blank=True)
    last_update = models.DateTimeField(null=True, blank=True, help_text="When Defender last changed the alert.")
    resolved = models.DateTimeField(null=True, blank=True)
    machine_name = models.CharField(max_length=253, blank=True, help_text="The machine as Defender reports it.")
    matched_name = models.CharField(max_length=253, blank=True, help_text="The actor's name that matched it.")
    device_id = models.CharField("device ID", max_length=200, blank=True)
    mitre_techniques = StoredJSONField("MITRE techniques", default=list, blank=True)
    incident_id = models.CharField("incident ID", max_length=200, blank=True)
    incident_url = models.URLField("incident URL", max_length=2000, blank=True)
    threat_family = models.CharField(max_length=256, blank=True)
    threat_name = models.CharField(max_length=256, blank=True)
    detector_id = models.CharField("detector ID", max_length=200, blank=True)
    classification = models.CharField(max_length=256, blank=True)
    determination = models.CharField(max_length=256, blank=True)
    assigned_to = models.CharField(max_length=256, blank=True)
    service_source = models.CharField(max_length=256, blank=True)
    product_name = models.CharField(max_length=256, blank=True)
    portal_url = models.URLField("Defender portal URL", max_length=2000, blank=True)
    # A list of services.alerts.Evidence as dicts (at most MOST_EVIDENCE); the table never loads it, the detail does.
    evidence = StoredJSONField(default=list, blank=True)
    raw = StoredJSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(editable=False)
    updated_at = models.DateTimeField(editable=False)

    objects = AlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-pk"]
        constraints = [models.UniqueConstraint(fields=["tenant_id", "alert_id"], name="alert_unique_per_tenant")]
        # One index per sortable column of the table, in the exact order it sorts (the column, then newest first, then
        # the key): the first page and, read backwards, the last page are a walk along one index, never a sort.
        indexes = [
            # With the times the window's test reads (created is a column already): counting the window of an
            # actor's 100,000 alerts is a walk of this index alone, a third of what reading the rows took.
            models.Index(
                fields=["actor", "-created", "-id"],
                include=["first_event", "last_event"],
                name="alert_actor_created_sort",
            ),
            models.Index(fields=["actor", "severity_rank", "-created", "-id"], name="alert_actor_severity_sort"),
            models.Index(fields=["actor", "title", "-created", "-id"], name="alert_actor_title_sort"),
            models.Index(fields=["actor", "category", "-created", "-id"], name="alert_actor_category_sort"),
            models.Index(fields=["actor", "detection_source", "-created", "-id"], name="alert_actor_source_sort"),
            models.Index(fields=["actor", "status", "-created", "-id"], name="alert_actor_status_sort"),
            models.Index(fields=["actor", "machine_name", "-created", "-id"], name="alert_actor_machine_sort"),
        ]

    def __str__(self):
        return f"{self.title} ({self.alert_id})"

    # One alert saved or deleted on its own (the admin, a script) keeps Actor.alert_count too; the store's bulk paths
    # keep it themselves (defender.alert_store).
    def save(self, *args, **kwargs):
        with transaction.atomic():
            before = None if self._state.adding else Alert.objects.filter(pk=self.pk).values_list("actor_id").first()
            super().save(*args, **kwargs)
            if before and before[0] != self.actor_id:
                AlertSource.objects.filter(alert=self).update(actor_id=self.actor_id)
            recount_alerts({self.actor_id, *(before or ())})

    def delete(self, *args, **kwargs):
        with transaction.atomic():
            deleted = super().delete(*args, **kwargs)
            recount_alerts([self.actor_id])
        return deleted

    def matched_by(self, actor):
        """Which of the actor's names matched this alert: "hostname", "alternate hostname", or "" if neither now."""
        matched = self.matched_name.lower()
        if matched and matched == actor.hostname.lower():
            return "hostname"
        if matched and matched == actor.alternate_hostname.lower():
            return "alternate hostname"
        return ""


class AlertSource(models.Model):
    """An integration that returned an alert: when it first did, and when last."""

    # No foreign-key constraint in the database: checking it locks each alert row the store has just written, which
    # took half the time of storing 10,000 alerts. Only the store writes these rows, with keys read from the alerts in
    # the same transaction, and Django's delete collector removes them with their alert on every delete path.
    # Nor an index of its own: the unique constraint below starts with the alert.
    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, related_name="sources", db_constraint=False, db_index=False
    )
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="alert_sources")
    # The alert's actor, kept with it (the store moves both when an alert is matched anew): the table of an actor's
    # window last asked keeps the alerts the asked integrations returned, and reading that actor's sources from
    # their own index costs its alerts, where probing each alert's sources or hashing every actor's cost 100 ms at a
    # million alerts. No constraint, as for the alert: the actor's delete takes its alerts and these with them.
    actor = models.ForeignKey(
        Actor, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False, editable=False
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["integration__name"]
        constraints = [models.UniqueConstraint(fields=["alert", "integration"], name="alert_source_unique")]
        indexes = [models.Index(fields=["actor", "integration", "alert"], name="alert_source_actor")]

    def __str__(self):
        return f"{self.alert_id} from {self.integration_id}"

    def save(self, *args, **kwargs):
        if self.actor_id is None:
            self.actor_id = self.alert.actor_id
        super().save(*args, **kwargs)


@receiver(post_delete, sender=Integration)
def _drop_alerts_no_integration_returns(sender, instance, **kwargs):
    """An integration's alerts go with it, except those another integration also returned."""
    Alert.objects.filter(sources__isnull=True).delete()


class AlertFetch(models.Model):
    """The last time an integration was asked for an actor's alerts: when, for which window, and how it went.

    ``since`` and ``until`` are the window as the person asked for it; Defender was asked for that window widened on
    both ends by the clock-skew tolerance, so that an alert stamped by a clock a little ahead or behind is not lost.
    """

    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="alert_fetches")
    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="alert_fetches")
    asked_at = models.DateTimeField()
    since = models.DateTimeField()
    until = models.DateTimeField()
    clock_skew_seconds = models.PositiveIntegerField(
        "clock-skew tolerance (seconds)", default=0, help_text="How far the window was widened on both ends."
    )
    tried_names = models.JSONField(default=list, blank=True)
    ok = models.BooleanField()
    message = models.TextField(blank=True, help_text="What Defender answered, or the error and what to do about it.")
    alert_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["integration__name"]
        constraints = [models.UniqueConstraint(fields=["actor", "integration"], name="alert_fetch_one_per_integration")]

    def __str__(self):
        return f"{self.integration} asked for {self.actor} at {self.asked_at:%Y-%m-%d %H:%M}"

    @property
    def searched(self):
        """The window Defender was asked for: as asked, widened by the clock-skew tolerance."""
        skew = timedelta(seconds=self.clock_skew_seconds)
        return self.since - skew, self.until + skew

    # The sentence services.alerts.with_unreadable adds when Defender sent alerts that could not be read.
    UNREADABLE_NOTE = re.compile(r"\S+ alerts? could not be read and (?:was|were) skipped\.")

    @property
    def unreadable_note(self):
        """How many alerts of this answer were skipped as unreadable (a sentence), or ""."""
        found = self.UNREADABLE_NOTE.search(self.message)
        return found.group(0) if found else ""


class SyncState(models.Model):
    """An integration's alert sweep: how far it has read (the cursor, Defender's lastUpdateTime), who is sweeping it
    now, and how the last sweep went."""

    integration = models.OneToOneField(Integration, on_delete=models.CASCADE, related_name="sync_state")
    # Everything updated at or after the cursor is still to be read; the alert IDs already stored that carry exactly
    # the cursor's time are not read again.
    cursor = models.DateTimeField(null=True, blank=True)
    cursor_alert_ids = models.JSONField(default=list, blank=True)
    # A sweep running: when it was claimed and by which claim, so that a second worker leaves it alone.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=36, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(null=True, blank=True)
    last_summary = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self):
        return f"Alert sweep of {self.integration}"


class ActorMachine(models.Model):
    """A Defender machine ID learnt for an actor in a tenant: an alert of that machine is the actor's even after the
    machine was renamed."""

    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="machines")
    tenant_id = models.CharField(max_length=253)
    machine_id = models.CharField(max_length=200)
    learnt_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["actor", "tenant_id", "machine_id"], name="actor_machine_unique")
        ]
        indexes = [models.Index(fields=["tenant_id", "machine_id"], name="actor_machine_by_machine")]

    def __str__(self):
        return f"{self.actor} is machine {self.machine_id}"


class RemoteNode(models.Model):
    """A node on the far side of a network boundary that runs the jobs of the integrations assigned to it.

    It pulls its work over HTTPS with an access token; the site keeps only the token's SHA-256 (the token is 256
    random bits, so a fast hash is enough) and never connects to the node.
    """

    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="How this node is known here, e.g. the network it sits in: dmz-frankfurt.",
    )
    description = models.TextField(blank=True, help_text="Where the node runs and who looks after it.")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    token_hint = models.CharField(max_length=12, blank=True, editable=False, help_text="The token's first characters.")
    token_issued_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    poll_interval_seconds = models.PositiveIntegerField(
        "poll interval (seconds)",
        default=30,
        validators=[validators.RangeValidator(5, 600, "Enter a poll interval between 5 and 600 seconds.")],
        help_text="How long the node's agent waits on each check-in for work.",
    )
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_seen_address = models.GenericIPAddressField(null=True, blank=True, editable=False)
    agent_version = models.CharField(max_length=40, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("defender:remotenode-detail", args=[self.pk])


class Job(models.Model):
    """A Test or an alert lookup of a remote integration, waiting for, run by, or answered by its remote node."""

    Kind = enums.JobKind

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=10, choices=enums.choices(Kind))
    # Run by a worker of this site (a Local integration's Get alerts) rather than claimed by a remote node.
    runs_here = models.BooleanField(default=False)
    parameters = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    node = models.ForeignKey(RemoteNode, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    # Several agent processes may share a node's token: this says which one holds the job, so that one agent saying
    # "I hold nothing" returns only its own claims to the queue.
    agent_id = models.CharField("agent", max_length=64, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deadline = models.DateTimeField(help_text="A job no node claims by then ends as expired.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    answer_deadline = models.DateTimeField(
        null=True, blank=True, help_text="A running Test whose node has not answered by then fails."
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "created_at"], name="job_state_created")]

    def __str__(self):
        return f"{self.get_kind_display()} of {self.integration} ({self.state})"

    @property
    def finished(self):
        return self.state in (self.State.DONE, self.State.FAILED, self.State.EXPIRED, self.State.CANCELLED)


class TestRun(models.Model):
    """One press of Test: what was tested, by whom, each step as it finished, and what the steps came to.

    The steps are written as each one finishes, so a page that polls the run shows them one by one. A run of typed
    values keeps only a keyed digest of them (to tell whether Submit saves the same values), never the values or the
    secret. A Remote integration's run waits for its job's answer.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    class Subject(models.TextChoices):
        INTEGRATION = "integration", "Saved integration"
        TYPED_VALUES = "typed", "Typed values"
        PROXY_RULE = "proxy_rule", "Proxy rule"

    class Trigger(models.TextChoices):
        PRESSED = "pressed", "Pressed"
        SCHEDULED = "scheduled", "Scheduled"
        COMMAND = "command", "Command"

    subject = models.CharField(max_length=12, choices=Subject.choices)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.PRESSED)
    # Typed values' settings, secret included, encrypted, for the worker that runs their Test; emptied when it ends.
    typed_settings = EncryptedTextField(editable=False)
    integration = models.ForeignKey(
        Integration, null=True, blank=True, on_delete=models.CASCADE, related_name="test_runs"
    )
    proxy_rule = models.ForeignKey(ProxyRule, null=True, blank=True, on_delete=models.CASCADE, related_name="test_runs")
    values_digest = models.CharField(max_length=64, blank=True, editable=False)
    title = models.CharField(max_length=200)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    steps = models.JSONField(default=list, blank=True)
    verdict = models.CharField(max_length=12, blank=True)
    summary = models.TextField(blank=True)
    job = models.OneToOneField(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="test_run")

    class Meta:
        ordering = ["-started_at"]
        # The status strip: an integration's last finished runs.
        indexes = [models.Index(fields=["integration", "-finished_at"], name="testrun_history")]

    def __str__(self):
        return f"Test of {self.title}"

    def get_absolute_url(self):
        return reverse("defender:testrun-detail", args=[self.pk])

    @property
    def finished(self):
        return self.finished_at is not None

    @property
    def cancelled(self):
        return self.job is not None and self.job.state == Job.State.CANCELLED


class Worker(models.Model):
    """A background worker that said it is alive: /readyz and Settings > System read these."""

    hostname = models.CharField(max_length=255, unique=True)
    version = models.CharField(max_length=40)
    pid = models.PositiveIntegerField()
    concurrency = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["hostname"]

    def __str__(self):
        return self.hostname


class Outcome(models.TextChoices):
    """What Defender did about one procedure, best first (VECTR's priority: Blocked, Alerted, Logged, None)."""

    PREVENTED = "prevented", "Prevented"
    ALERTED = "alerted", "Alerted"
    DETECTED = "detected", "Detected"
    MISSED = "missed", "Missed"
    PENDING = "pending", "Pending"


# Higher is better; the best outcome of a technique is the highest rank among its procedures.
OUTCOME_RANK = {
    Outcome.PREVENTED: 4,
    Outcome.ALERTED: 3,
    Outcome.DETECTED: 2,
    Outcome.MISSED: 1,
    Outcome.PENDING: 0,
}


class Execution(models.Model):
    """One run of attack procedures on an actor: an ATTiRe log, a body posted to the API, or procedures typed in."""

    class Source(models.TextChoices):
        ATTIRE = "attire", "ATTiRe file"
        API = "api", "API"
        MANUAL = "manual", "Manual"

    source = models.CharField(max_length=10, choices=Source.choices)
    # ATTiRe's execution-data.execution-id; the same ID imported twice is one execution.
    external_id = models.CharField("execution ID", max_length=200, blank=True)
    execution_source = models.CharField(
        max_length=200, blank=True, help_text="What ran the procedures, as it says (e.g. Invoke-AtomicRedTeam)."
    )
    target_host = models.CharField(max_length=253, blank=True, help_text="The target host as the log reports it.")
    target_ip = models.CharField("target IP", max_length=64, blank=True)
    target_user = models.CharField(max_length=256, blank=True)
    actor = models.ForeignKey(Actor, on_delete=models.CASCADE, related_name="executions")
    time_generated = models.DateTimeField(null=True, blank=True, help_text="When the log was written.")
    detection_window_minutes = models.PositiveIntegerField(
        "detection window (minutes)",
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)],
        help_text="Blank: each integration's own (default 60).",
    )
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported_at = models.DateTimeField(auto_now_add=True)
    evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-imported_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["external_id"], condition=~models.Q(external_id=""), name="execution_external_id_unique"
            )
        ]
        indexes = [models.Index(fields=["actor", "-imported_at"], name="execution_actor_recent")]

    def __str__(self):
        return self.external_id or f"Execution {self.pk}"

    def get_absolute_url(self):
        return reverse("defender:execution-detail", args=[self.pk])


class Procedure(models.Model):
    """One attack procedure of an execution, and what Defender did about it.

    ``outcome`` is what the pages, filters and exports show: the override when an administrator set one, else the
    engine's ``evaluated_outcome``. Keep both through ``set_evaluated`` and ``set_override``.
    """

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="procedures")
    order = models.PositiveIntegerField(default=0)
    technique_id = models.CharField("MITRE technique", max_length=16, validators=[validators.validate_technique_id])
    name = models.CharField(max_length=500, blank=True)
    procedure_id = models.CharField("procedure ID", max_length=64, blank=True, help_text="The procedure's GUID.")
    description = models.TextField(blank=True)
    executor = models.CharField(max_length=100, blank=True)
    command = models.TextField(blank=True)
    output = models.TextField(blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField()
    steps = models.JSONField(default=list, blank=True, help_text="The steps as imported.")
    # When Defender's time to report it runs out: stop + the detection window. Pending until then.
    window_closes_at = models.DateTimeField()

    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    evaluated_outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    # Why, in words: "telemetry not checked: grant AdvancedQuery.Read.All", "could not ask Defender EU: ...".
    outcome_note = models.TextField(blank=True)
    # Per integration asked: [{"integration": id, "name": ..., "ok": bool, "message": ...}].
    checks = models.JSONField(default=list, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    override_outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    override_reason = models.TextField(blank=True)
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    override_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["execution", "order", "pk"]
        indexes = [
            models.Index(fields=["execution", "order"], name="procedure_in_order"),
            models.Index(fields=["technique_id"], name="procedure_technique"),
            models.Index(fields=["outcome"], name="procedure_outcome"),
            models.Index(
                fields=["window_closes_at"],
                condition=models.Q(evaluated_outcome="pending"),
                name="procedure_pending",
            ),
        ]

    def __str__(self):
        return f"{self.technique_id} {self.name}".strip()

    @property
    def overridden(self) -> bool:
        return bool(self.override_outcome)

    def set_evaluated(self, outcome: str) -> None:
        """Record the engine's outcome; the shown outcome follows unless an administrator overrode it."""
        self.evaluated_outcome = outcome
        self.outcome = self.override_outcome or outcome

    def set_override(self, outcome: str, reason: str, user) -> None:
        """An administrator's outcome, with why, who and when; an empty outcome clears the override."""
        self.override_outcome = outcome
        self.override_reason = reason if outcome else ""
        self.override_by = user if outcome else None
        self.override_at = timezone.now() if outcome else None
        self.outcome = outcome or self.evaluated_outcome


class ProcedureMatch(models.Model):
    """A stored alert that matches a procedure, and which rules matched, so the page can say why."""

    class Rule(models.TextChoices):
        TECHNIQUE = "technique", "MITRE technique"
        COMMAND = "command", "command line"
        FILE = "file", "file"
        HASH = "hash", "file hash"

    procedure = models.ForeignKey(Procedure, on_delete=models.CASCADE, related_name="matches")
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="procedure_matches")
    rules = models.JSONField(default=list, help_text="The Rule values that matched.")
    reason = models.CharField(max_length=500, help_text="Why, in words: technique T1003 is the parent of T1003.001.")
    prevented = models.BooleanField(default=False, help_text="Its evidence or remediation says blocked or prevented.")

    class Meta:
        ordering = ["procedure", "alert"]
        constraints = [models.UniqueConstraint(fields=["procedure", "alert"], name="procedure_match_unique")]

    def __str__(self):
        return f"{self.procedure_id} ~ {self.alert_id}"


class ApiToken(models.Model):
    """A user's token for the REST API: shown once, stored as its SHA-256, revocable; it may do what the user may."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What uses it, e.g. the Atomic Red Team runner.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=12, editable=False, help_text="The token's first characters.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.hint}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None
