"""Which actor a swept alert belongs to, decided here rather than by asking Defender per actor.

An actor is matched by the machine ID learnt for it in the tenant (so a renamed machine stays its actor's), by its
hostname or alternate hostname (a short name and its FQDN name the same host: services.alerts.same_host), or by its
IP address. An alert is stored once per tenant, so when several actors match it goes to the best match: the learnt
machine ID, then the hostname typed exactly, the alternate hostname exactly, the short name or FQDN of either, the IP
address; among equals the actor created first. The other matches are counted, not stored.
"""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from defender.models import Actor, ActorMachine
from defender.services.alerts import same_host

MACHINE_ID, HOSTNAME, ALTERNATE, HOSTNAME_SHORT, ALTERNATE_SHORT, IP_ADDRESS = range(6)


@dataclass(frozen=True, order=True)
class Match:
    rank: int
    actor_id: int
    matched_name: str


def _normal_ip(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return ""


def _short(name: str) -> str:
    return name.split(".", 1)[0]


class ActorIndex:
    """Every actor's names, learnt machine IDs and IP address, indexed so that matching an alert costs a few lookups
    whatever the number of actors."""

    def __init__(self, actors: Iterable[Actor], learnt: Iterable[tuple[int, str]] = ()) -> None:
        self.actors: dict[int, Actor] = {}
        self.exact: dict[str, list[tuple[int, int, str]]] = {}
        self.by_short: dict[str, list[tuple[int, int, str]]] = {}
        self.by_ip: dict[str, list[int]] = {}
        self.by_machine: dict[str, set[int]] = {}
        for actor in actors:
            self.actors[actor.pk] = actor
            for rank, name in ((HOSTNAME, actor.hostname), (ALTERNATE, actor.alternate_hostname)):
                folded = (name or "").strip().lower().rstrip(".")
                if not folded:
                    continue
                self.exact.setdefault(folded, []).append((rank, actor.pk, name))
                self.by_short.setdefault(_short(folded), []).append((rank + 2, actor.pk, name))
            if actor.ip_address:
                self.by_ip.setdefault(_normal_ip(actor.ip_address), []).append(actor.pk)
        for actor_id, machine_id in learnt:
            if actor_id in self.actors:
                self.by_machine.setdefault(machine_id, set()).add(actor_id)

    @property
    def wants_addresses(self) -> bool:
        """Whether any actor is known by an IP address (only then are the machines' addresses worth a call)."""
        return bool(self.by_ip)

    def matches(self, reported: str, machine_id: str = "", addresses: Iterable[str] = ()) -> list[Match]:
        """Every actor the alert's machine may be, best first, one match per actor."""
        found: dict[int, Match] = {}

        def add(match: Match) -> None:
            if match.actor_id not in found or match < found[match.actor_id]:
                found[match.actor_id] = match

        for actor_id in self.by_machine.get(machine_id, ()) if machine_id else ():
            actor = self.actors[actor_id]
            add(Match(MACHINE_ID, actor_id, reported or actor.hostname))
        folded = reported.strip().lower().rstrip(".")
        if folded and not _normal_ip(folded):
            for rank, actor_id, name in self.exact.get(folded, ()):
                add(Match(rank, actor_id, name))
            for rank, actor_id, name in self.by_short.get(_short(folded), ()):
                if same_host(name, folded):
                    add(Match(rank, actor_id, name))
        for address in addresses:
            for actor_id in self.by_ip.get(_normal_ip(address), ()) if _normal_ip(address) else ():
                add(Match(IP_ADDRESS, actor_id, str(self.actors[actor_id].ip_address)))
        return sorted(found.values())


def learnt_machines(tenant: str) -> list[tuple[int, str]]:
    """(actor id, machine ID) learnt in the tenant."""
    return list(ActorMachine.objects.filter(tenant_id=tenant).values_list("actor_id", "machine_id"))


def learn(tenant: str, pairs: set[tuple[int, str]]) -> None:
    """Remember that these actors are these machines (an alert of the machine matched the actor by name or IP)."""
    ActorMachine.objects.bulk_create(
        [ActorMachine(actor_id=actor_id, tenant_id=tenant, machine_id=machine_id) for actor_id, machine_id in pairs],
        ignore_conflicts=True,
        batch_size=500,
    )
