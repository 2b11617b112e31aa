"""Validation of what users type into integration, proxy and actor forms.

Each error says what is wrong and what would fit.
"""

import ipaddress
import re
import uuid
from urllib.parse import urlsplit

from cryptography import x509
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

from defender.services import addresses

HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def validate_guid(value):
    try:
        uuid.UUID(str(value).strip())
    except ValueError:
        raise ValidationError(
            "Enter the application (client) ID as a GUID, e.g. 00000000-0000-0000-0000-000000000000.",
            code="invalid_guid",
        ) from None


def is_domain_name(value):
    labels = value.rstrip(".").split(".")
    return len(value) <= 253 and len(labels) >= 2 and all(HOST_LABEL.match(label) for label in labels)


def validate_tenant(value):
    value = str(value).strip()
    try:
        uuid.UUID(value)
        return
    except ValueError:
        pass
    if not is_domain_name(value):
        raise ValidationError(
            "Enter the directory (tenant) ID as a GUID or a domain name such as contoso.onmicrosoft.com.",
            code="invalid_tenant",
        )


def validate_host(value):
    """A host the site connects to (an API host, a proxy): a bare name or address, and not a metadata service."""
    validate_host_syntax(value)
    refuse_metadata_host(str(value).strip())


def refuse_metadata_host(host):
    """Link-local and cloud metadata hosts are refused unless ALLOW_METADATA_HOSTS is on (services/addresses.py)."""
    if settings.ALLOW_METADATA_HOSTS:
        return
    reason = addresses.host_refusal(host)
    if reason:
        raise ValidationError(f"Refused: {reason} {addresses.HOW_TO_ALLOW}", code="metadata_host")


def validate_host_syntax(value):
    """A bare hostname or IP address: no scheme, path or port (those have their own fields)."""
    value = str(value).strip()
    if "://" in value:
        raise ValidationError("Enter the host name only, without http:// or https://.", code="host_scheme")
    if "/" in value:
        raise ValidationError("Enter the host name only, without a path.", code="host_path")
    try:
        ipaddress.ip_address(value.strip("[]"))
        return
    except ValueError:
        pass
    if ":" in value:
        raise ValidationError("Enter the host name without a port; the port has its own field.", code="host_port")
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253 or not all(HOST_LABEL.match(label) for label in labels):
        raise ValidationError(
            "Enter a host name (letters, digits and hyphens, dot-separated) or an IP address.", code="invalid_host"
        )


def validate_https_url(value):
    parts = urlsplit(str(value).strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValidationError(
            "Enter an https:// URL, e.g. https://login.microsoftonline.com (Entra ID accepts only HTTPS).",
            code="auth_url_https",
        )
    refuse_metadata_host(parts.hostname)


def validate_pem_certificates(value):
    """One or more PEM certificates (a CA bundle is fine); the parser's own reason when they do not parse."""
    text = str(value).strip()
    if not text:
        return
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValidationError(
            "Paste the certificate in PEM form, starting with -----BEGIN CERTIFICATE-----.", code="pem_missing"
        )
    try:
        x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise ValidationError(f"This is not a valid PEM certificate: {exc}", code="pem_invalid") from None


API_VERSION = re.compile(r"^(v\d{1,2}(\.\d{1,2})?|beta)?$")


def validate_api_version(value):
    """A version path segment such as v1.0 or beta (blank: the API's latest); it becomes part of every URL."""
    if not API_VERSION.match(str(value)):
        raise ValidationError(
            "Enter an API version such as v1.0 or beta, or leave it blank for the latest.", code="api_version"
        )


def validate_hostname_or_fqdn(value):
    """An actor's hostname: a short name (ws-fin-07) or an FQDN; no scheme, path or port; matched, never reached."""
    validate_host_syntax(value)


@deconstructible
class RangeValidator:
    """low <= value <= high, with one message that states the range (Django's Min/Max pair would give two)."""

    def __init__(self, low, high, message):
        self.low, self.high, self.message = low, high, message

    def __call__(self, value):
        if value is None or not (self.low <= value <= self.high):
            raise ValidationError(self.message, code="out_of_range")

    def __eq__(self, other):
        return isinstance(other, RangeValidator) and (self.low, self.high, self.message) == (
            other.low,
            other.high,
            other.message,
        )


validate_port = RangeValidator(1, 65535, "Enter a port between 1 and 65535.")
validate_timeout = RangeValidator(0.1, 300, "Enter a timeout between 0.1 and 300 seconds.")
validate_retries = RangeValidator(0, 10, "Enter between 0 and 10 retries.")
validate_page_size = RangeValidator(1, 10000, "Enter a page size between 1 and 10,000 (the API's maximum).")
validate_calls_per_minute = RangeValidator(1, 10000, "Enter between 1 and 10,000 calls a minute, or leave it blank.")
validate_calls_per_hour = RangeValidator(1, 600000, "Enter between 1 and 600,000 calls an hour, or leave it blank.")
validate_lookback = RangeValidator(1, 24 * 180, "Enter a lookback window between 1 hour and 180 days (4320 hours).")
validate_clock_skew = RangeValidator(0, 3600, "Enter a clock-skew tolerance between 0 and 3600 seconds.")


TECHNIQUE_ID = re.compile(r"^T\d{4}(\.\d{3})?$")


def validate_technique_id(value):
    """A MITRE ATT&CK technique or sub-technique ID as ATT&CK writes it: T1003 or T1003.001."""
    if not TECHNIQUE_ID.match(str(value)):
        raise ValidationError(
            "Enter a MITRE ATT&CK technique ID such as T1059 or T1003.001 (a capital T, four digits, and for a"
            " sub-technique a dot and three digits).",
            code="invalid_technique",
        )
