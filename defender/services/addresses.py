"""Hosts a Test may not reach: link-local and cloud metadata addresses.

A cloud machine's metadata service (169.254.169.254 and its relatives) answers anyone on the machine with the
machine's own credentials. A Test that could be pointed there would let whoever may edit an integration read them
through the Test's messages, so such hosts are refused by name in the forms (defender/validators.py) and by address
once a name is resolved (the Test's DNS step), unless the setting ALLOW_METADATA_HOSTS is on.
"""

import ipaddress
import socket
from collections.abc import Iterable

from defender.services.errors import ConnectionFailed

METADATA_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, Azure, GCP, Oracle, DigitalOcean metadata at 169.254.169.254
        "fe80::/10",  # IPv6 link-local
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
    }
)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

WHY = "where cloud metadata services hand out the machine's own credentials"
HOW_TO_ALLOW = "Set ALLOW_METADATA_HOSTS=true on the site (or the remote node) only if Defender really is there."


def metadata_hosts_allowed() -> bool:
    from django.conf import settings

    return bool(settings.configured and getattr(settings, "ALLOW_METADATA_HOSTS", False))


def _address(text: str) -> IPAddress | None:
    """The IP address ``text`` spells, in any form the system resolver accepts (2852039166 is 169.254.169.254)."""
    text = text.strip().strip("[]")
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _kind(address: IPAddress | None) -> str | None:
    if address is None or not any(address in network for network in METADATA_NETWORKS):
        return None
    return "a link-local address" if address.is_link_local else "a cloud metadata address"


def host_refusal(host: str) -> str | None:
    """Why this host name or IP address, as typed, may not be reached (before any lookup); None when it may."""
    name = host.strip().rstrip(".").lower()
    if name in METADATA_NAMES:
        return f"{host} is the name of a cloud metadata service, which hands out the machine's own credentials."
    kind = _kind(_address(name))
    return f"{host} is {kind}, {WHY}." if kind else None


def refuse_metadata(name: str, addresses: Iterable[str]) -> None:
    """Raise ConnectionFailed when ``name``, or an address it resolved to, is a metadata or link-local address."""
    if metadata_hosts_allowed():
        return
    reason = host_refusal(name)
    for address in addresses:
        if reason:
            break
        kind = _kind(_address(address))
        if kind:
            reason = f"{name} resolves to {address}, {kind}, {WHY}."
    if reason:
        raise ConnectionFailed(f"Refused: {reason}", HOW_TO_ALLOW)
