"""Where a saved secret may go: the destination it was typed for is recorded with it and checked when it is sent.

A client secret travels to the Auth URL (for the tenant and the scope of its API), and the tokens minted from it to
the API's host, port and protocol; both through the integration's proxy rule unless it bypasses them, trusting the
integration's TLS settings and the proxy's CA, from this site or from the integration's remote node (whoever holds
the node's token). A proxy password travels to the proxy's type, host and port, trusting the proxy's CA.

When a secret is typed (in a form, or set on the model in code) and saved, that destination is stored beside it,
sealed with an HMAC keyed from FIELD_ENCRYPTION_KEYS and bound to the secret itself: someone who can write plain
columns can change where a record points, but cannot make a seal for the new place, nor move a seal to another
secret. ``check_before_sending`` compares the seal with the record as it is when the secret is about to be sent, so
no write path (a form, the admin, an assignment page, an edit of the proxy rule, a new node token, or a
``QuerySet.update()`` in a shell) can move a secret or a token minted from it: the secret must be typed again.

The seal keeps the destination itself (hosts, ports, digests of certificates, never a secret), so a refusal can
name what changed. This module takes records by attribute only, so migrations can use it with historical models.
"""

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from defender.certificates import certificate_digests
from defender.encryption import DecryptionError
from defender.fields import has_secret, is_typed
from defender.services.connection import ProxySettings, bare_host, split_host_list
from defender.services.errors import SecretDestinationChanged

SEAL_VERSION = 1
# What building a secret's settings raises instead of sending it: no key opens it, or it would go somewhere else.
REFUSED_SECRETS = (DecryptionError, SecretDestinationChanged)
CURRENT = object()  # "as the record says now", for the keyword arguments that try another proxy rule or node

# What each part of an integration's destination is called in messages, in the order they are named.
INTEGRATION_PARTS = {
    "auth_url": "Auth URL",
    "tenant_id": "Tenant ID",
    "resource": "Resource",
    "api_flavour": "API flavour",
    "protocol": "Protocol",
    "host": "Host",
    "port": "Port",
    "proxy": "Proxy",
    "proxy_type": "the proxy's type",
    "proxy_host": "the proxy's host",
    "proxy_port": "the proxy's port",
    "proxy_username": "the proxy's username",
    "proxy_ca_certificate": "the proxy's CA certificate",
    "proxy_bypassed": "the proxy's bypass hosts",
    "verify_tls": "Verify TLS",
    "ca_certificate": "CA certificate",
    "location": "Location",
    "remote_node": "Remote node",
    "remote_node_token": "the remote node's token",
}
PROXY_PARTS = {"proxy_type": "Type", "host": "Host", "port": "Port", "ca_certificate": "CA certificate"}
# A part that says more than the parts after it: when it changed, they are not named as well.
COVERS = {"proxy": "proxy_", "location": "remote_node", "remote_node": "remote_node_token"}
NOT_RECORDED = "no destination is recorded for it"


def _host(value):
    return bare_host(str(value or "")).lower().rstrip(".")


def _port(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _origin(url):
    """Only scheme and host (and port) of the Auth URL decide where tokens are asked for (see auth.authority_url)."""
    parts = urlsplit(str(url or "").strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _resource(value):
    resource = str(value or "").strip().rstrip("/")
    return resource[: -len("/.default")] if resource.endswith("/.default") else resource


def _token_mark(node):
    """Changes whenever the node's token is re-issued or revoked; the token's hash is not kept here as it is."""
    if not node.token_hash:
        return "no token"
    issued = node.token_issued_at.astimezone(UTC).isoformat() if node.token_issued_at else ""
    return hashlib.sha256(f"{node.token_hash}|{issued}".encode()).hexdigest()[:32]


def integration_destination(integration, *, proxy_rule=CURRENT, remote_node=CURRENT) -> dict:
    """Everything that decides where the integration's client secret and its tokens travel, as plain JSON values.

    ``proxy_rule`` and ``remote_node`` try the integration with another rule or node (None for none) without
    changing it: what a page shows before saving.
    """
    rule = integration.proxy_rule if proxy_rule is CURRENT else proxy_rule
    remote = integration.location == "remote"
    node = (integration.remote_node if remote_node is CURRENT else remote_node) if remote else None
    api_host, auth_host = _host(integration.host), urlsplit(str(integration.auth_url or "").strip()).hostname or ""
    destination = {
        "auth_url": _origin(integration.auth_url),
        "tenant_id": str(integration.tenant_id or "").strip().lower(),
        "resource": _resource(integration.resource),
        "api_flavour": integration.api_flavour,
        "protocol": integration.protocol,
        "host": api_host,
        "port": _port(integration.port),
        "proxy": rule is not None,
        "verify_tls": bool(integration.verify_tls),
        "ca_certificate": certificate_digests(integration.ca_certificate),
        "location": integration.location,
        "remote_node": node.pk if node is not None else None,
        "remote_node_token": _token_mark(node) if node is not None else None,
    }
    if rule is not None:
        bypass = split_host_list(rule.bypass_hosts)
        route = ProxySettings(rule.proxy_type, rule.host, _port(rule.port), bypass_hosts=bypass)
        # Which of the two hosts go direct instead: putting one behind the proxy (or taking it out) moves it.
        bypassed = [name for name, host in (("api", api_host), ("auth", auth_host)) if route.bypasses(host)]
        destination.update(
            {
                "proxy_type": rule.proxy_type,
                "proxy_host": _host(rule.host),
                "proxy_port": _port(rule.port),
                "proxy_username": rule.username,
                "proxy_ca_certificate": certificate_digests(rule.ca_certificate),
                "proxy_bypassed": bypassed,
            }
        )
    return destination


def proxy_password_destination(rule) -> dict:
    """Where a proxy rule's password travels: to the proxy of this type, host and port, trusting its CA."""
    return {
        "proxy_type": rule.proxy_type,
        "host": _host(rule.host),
        "port": _port(rule.port),
        "ca_certificate": certificate_digests(rule.ca_certificate),
    }


@dataclass(frozen=True)
class SealedSecret:
    """One secret field whose destination is recorded in ``record`` beside it."""

    field: str
    record: str
    purpose: str
    destination: Callable[..., dict[str, Any]]  # (instance, **trying) -> the parts where the secret would go
    parts: dict[str, str]
    noun: str
    retype_where: str

    def subject(self, instance):
        return self.noun.format(name=instance.name)


# Each model's sealed secrets, the first being its main one. An integration's client certificate (its private key)
# travels exactly where its client secret would, so it is sealed for the same destination, with its own record.
SEALED_SECRETS = {
    "defender.integration": (
        SealedSecret(
            field="client_secret",
            record="client_secret_destination",
            purpose="integration client secret",
            destination=integration_destination,
            parts=INTEGRATION_PARTS,
            noun="The client secret of integration {name}",
            retype_where="on the integration's Edit page",
        ),
        SealedSecret(
            field="client_certificate",
            record="client_certificate_destination",
            purpose="integration client certificate",
            destination=integration_destination,
            parts=INTEGRATION_PARTS,
            noun="The client certificate of integration {name}",
            retype_where="on the integration's Edit page",
        ),
    ),
    "defender.proxyrule": (
        SealedSecret(
            field="password",
            record="password_destination",
            purpose="proxy rule password",
            destination=proxy_password_destination,
            parts=PROXY_PARTS,
            noun="The password of proxy rule {name}",
            retype_where="on the proxy rule's Edit page",
        ),
    ),
}


def _all_sealed(get_model):
    """(model, spec) for every sealed secret the models have (a historical model may predate a field)."""
    found = []
    for label, specs in SEALED_SECRETS.items():
        model = get_model(*label.split("."))
        names = {field.name for field in model._meta.get_fields()}
        found += [(model, spec) for spec in specs if spec.field in names and spec.record in names]
    return found


def sealed_secret(instance, field: str | None = None) -> SealedSecret:
    """The sealed secret ``field`` of the instance's model (its main one by default)."""
    specs = SEALED_SECRETS[instance._meta.label_lower]
    return next(spec for spec in specs if field in (None, spec.field))


# Sealing


@lru_cache(maxsize=4)
def _seal_keys(keys):
    """One HMAC key per Fernet key, derived so that the seal never uses an encryption key as it is."""
    derived = []
    for key in keys:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"defender secret destination seal v1")
        derived.append(hkdf.derive(key.encode() if isinstance(key, str) else key))
    return tuple(derived)


def _keys():
    return _seal_keys(tuple(settings.FIELD_ENCRYPTION_KEYS))


def _mac(key, purpose, destination, secret):
    message = json.dumps([SEAL_VERSION, purpose, destination, str(secret)], sort_keys=True, separators=(",", ":"))
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def seal(purpose: str, destination: dict, secret: str) -> dict:
    """The record to store beside a secret just typed for this destination (empty for no secret)."""
    if not secret:
        return {}
    return {"version": SEAL_VERSION, "destination": destination, "mac": _mac(_keys()[0], purpose, destination, secret)}


def verifies(purpose: str, record, secret: str) -> bool:
    """True when the record was sealed, by one of the configured keys, for this very secret."""
    if not isinstance(record, dict) or record.get("version") != SEAL_VERSION:
        return False
    destination, mac = record.get("destination"), record.get("mac")
    if not isinstance(destination, dict) or not isinstance(mac, str):
        return False
    return any(hmac.compare_digest(_mac(key, purpose, destination, secret), mac) for key in _keys())


def reseal(purpose: str, record, secret: str):
    """The same record sealed with the current first key, when it verifies; otherwise unchanged (so a key rotation
    never turns a seal that did not verify into one that does)."""
    if not verifies(purpose, record, secret):
        return record
    return seal(purpose, record["destination"], secret)


# What changed


def changed_parts(recorded, current: dict, parts: dict) -> list[str]:
    """The names of the parts that differ, in message order (a covering part instead of the parts it covers)."""
    if not isinstance(recorded, dict):
        return [NOT_RECORDED]
    changed = [key for key in parts if recorded.get(key) != current.get(key)]
    for covering, prefix in COVERS.items():
        if covering in changed:
            changed = [key for key in changed if key == covering or not key.startswith(prefix)]
    return [parts[key] for key in changed]


def spoken_list(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def recorded_destination(instance, field=None):
    record = getattr(instance, sealed_secret(instance, field).record) or {}
    return record.get("destination") if isinstance(record, dict) else None


def retype_reasons(instance, field=None, **trying) -> list[str]:
    """What differs between where the saved secret was typed for and where the record (or the record tried with
    another proxy rule or node) would send it; empty when it may go, or when there is no saved secret to keep.

    For pages, before saving: it reads the recorded destination without verifying its seal (sending does that).
    """
    spec = sealed_secret(instance, field)
    if not has_secret(instance, spec.field) or is_typed(instance, spec.field):
        return []
    return changed_parts(recorded_destination(instance, field), spec.destination(instance, **trying), spec.parts)


def moved_by(integrations, **trying) -> list:
    """The integrations with a saved credential (client secret or certificate) whose destination the change tried
    here would move."""
    moved = []
    for integration in integrations:
        if not (has_secret(integration, "client_secret") or has_secret(integration, "client_certificate")):
            continue
        if integration_destination(integration) != integration_destination(integration, **trying):
            moved.append(integration)
    return moved


# Recording and checking


def record_typed_secret(instance, update_fields=None):
    """Before a save: seal the destination of each secret typed since the record was loaded. Returns the
    update_fields to save with (the record joins the secret)."""
    for spec in SEALED_SECRETS[instance._meta.label_lower]:
        if not is_typed(instance, spec.field):
            continue
        if update_fields is not None and spec.field not in update_fields:
            continue
        secret = instance.__dict__[instance._meta.get_field(spec.field).attname]
        setattr(instance, spec.record, seal(spec.purpose, spec.destination(instance), secret))
        if update_fields is not None:
            update_fields = {*update_fields, spec.record}
    return update_fields


def check_before_sending(instance, secret: str, field: str | None = None) -> None:
    """Raise SecretDestinationChanged unless the saved secret (``field``, the main one by default) was typed for
    where the record sends it now.

    A secret typed on a form and not saved goes where that form says: it is the one being typed for it.
    """
    spec = sealed_secret(instance, field)
    if not secret or is_typed(instance, spec.field):
        return
    advice = f"Type it again {spec.retype_where}: a saved secret only goes where it went before."
    record = getattr(instance, spec.record)
    if not verifies(spec.purpose, record, secret):
        raise SecretDestinationChanged(
            f"{spec.subject(instance)} is not sent: where it may go is not recorded, or the record was changed "
            "outside the console.",
            advice,
        )
    changed = changed_parts(record["destination"], spec.destination(instance), spec.parts)
    if changed:
        raise SecretDestinationChanged(
            f"{spec.subject(instance)} is not sent: it was typed for another destination, and since then "
            f"{spoken_list(changed)} changed.",
            advice,
        )


def record_current_destinations(get_model) -> int:
    """Seal every saved secret for the destination its record has now (the migration that introduced seals).

    A secret no configured key opens is left without a seal: it is refused until it is typed again.
    """
    sealed = 0
    for model, spec in _all_sealed(get_model):
        for instance in model.objects.exclude(**{spec.field: ""}).iterator():
            try:
                secret = getattr(instance, spec.field)
            except DecryptionError:
                continue
            record = seal(spec.purpose, spec.destination(instance), secret)
            model.objects.filter(pk=instance.pk).update(**{spec.record: record})
            sealed += 1
    return sealed


def reseal_all(get_model) -> int:
    """After a key rotation: seal again, with the new first key, every record that verifies (same destination)."""
    resealed = 0
    for model, spec in _all_sealed(get_model):
        for instance in model.objects.exclude(**{spec.field: ""}).iterator():
            record = getattr(instance, spec.record)
            renewed = reseal(spec.purpose, record, getattr(instance, spec.field))
            if renewed is not record:
                model.objects.filter(pk=instance.pk).update(**{spec.record: renewed})
                resealed += 1
    return resealed
