"""One sweep of a tenant's alerts: every alert updated since a cursor, in the largest pages the API allows, whatever
machine it is on (matching them to actors is the caller's, defender.operations.matching).

The Defender for Endpoint API is asked ``GET /api/alerts?$filter=lastUpdateTime ge CURSOR&$orderby=lastUpdateTime
asc&$expand=evidence&$top=10000`` and paged by keyset: the next page starts at the last page's last update time, and
the alerts already read that carry exactly that time are dropped. So each page says where a later sweep may start
once it is stored. Where the API refuses $orderby, the pages come unordered (by @odata.nextLink or $skip) and only
the sweep's last page says where to start. Graph (alerts_v2, by lastUpdateDateTime, @odata.nextLink only) and the
SIEM exporter (sinceTimeUtc, one answer) are read the same way, unordered. Sources: docs/microsoft-api.md.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from defender import presets
from defender.services import alerts as parse
from defender.services.client import MAX_PAGES, ApiClient, ReadAhead
from defender.services.errors import ApiFailed, BadResponse, NotFound, Throttled
from defender.services.untrusted import identifier, moment, text

# The largest page GET /api/alerts and GET /api/machines answer ($top at most 10,000).
MDE_MAX_TOP = 10000


@dataclass(frozen=True)
class SweptAlert:
    """One alert of the sweep, not yet matched (``alert.matched_name`` is empty): the machine it names, by name, by
    Defender's machine ID and by the IP addresses the alert itself gives."""

    alert: parse.Alert
    reported: str
    machine_id: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepPage:
    """What one call brought. ``cursor``: once this page (and those before it) is stored, a later sweep may start
    there, leaving out ``cursor_ids`` (the alerts read that carry exactly that time); None while the pages are
    unordered and more are to come."""

    alerts: list[SweptAlert]
    unreadable: int
    cursor: datetime | None
    cursor_ids: tuple[str, ...] = ()
    note: str = ""


@dataclass
class _Keyset:
    """The last update time read so far and the alerts that carry it."""

    cursor: datetime
    ids: set[str] = field(default_factory=set)

    def take(self, alert_id: str, updated: datetime | None) -> bool:
        """Whether the alert is new to this sweep (an alert at the cursor's time may have been read already); moves
        the cursor forward to its update time."""
        if updated is None:
            return True
        if updated == self.cursor and alert_id in self.ids:
            return False
        if updated > self.cursor:
            self.cursor, self.ids = updated, set()
        if updated == self.cursor:
            self.ids.add(alert_id)
        return True


def sweep(
    api: ApiClient, since: datetime, seen_at_since: Iterable[str] = (), page_size: int | None = None
) -> Iterator[SweepPage]:
    """The alerts updated at or after ``since`` (those of ``seen_at_since`` at exactly that time left out), page by
    page. Raises a DefenderError when a call fails; the pages yielded before stay good."""
    settings = api.settings
    keyset = _Keyset(since.astimezone(UTC), set(seen_at_since))
    if settings.flavour == presets.GRAPH:
        yield from _graph(api, keyset)
    elif settings.flavour == presets.SIEM:
        yield from _siem(api, keyset)
    else:
        yield from _mde(api, keyset, min(page_size or MDE_MAX_TOP, MDE_MAX_TOP))


def _time(when: datetime) -> str:
    """An OData DateTimeOffset literal to the microsecond: the cursor must not round an alert away."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _items(data: Any, path: str, page: int) -> list[Any]:
    if isinstance(data, list):
        return data
    items = data.get("value") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise BadResponse(f"Page {page} of {path} had no list of results; the sweep stopped there.")
    return items


# --- Defender for Endpoint ----------------------------------------------------------------------------------------


def _mde(api: ApiClient, keyset: _Keyset, top: int) -> Iterator[SweepPage]:
    """Keyset pages, each asked for as soon as the one before is read: while the caller stores a page, the next is
    on its way."""
    path = f"{parse.api_prefix(api.settings)}/alerts"
    portal = parse.portal_origin(api.settings)
    pages = ReadAhead(api.get_json)
    try:
        start, skip = keyset.cursor, 0
        pages.ask(api.url(path), _mde_query(start, skip, top), 1)
        for page in range(1, MAX_PAGES + 1):
            try:
                data = pages.answer()
            except ApiFailed as failure:
                if failure.code != 400 or page > 1:
                    raise
                # The tenant refuses $orderby: the same alerts, unordered; the cursor moves once all are read.
                yield from _mde_unordered(api, keyset, top, path, portal)
                return
            items = _items(data, path, page)
            if not _ascending(items):
                # The API ignored $orderby: a keyset over an unordered page would pass alerts not yet read.
                if page > 1:
                    raise BadResponse(
                        f"Page {page} of {path} was not in the order asked for ($orderby=lastUpdateTime asc); the "
                        "sweep stopped there, the cursor after the pages stored.",
                        "The next sweep starts there again.",
                    )
                yield from _mde_unordered(api, keyset, top, path, portal)
                return
            alerts, unreadable = _read_mde(items, keyset, portal)
            if len(items) < top:
                yield SweepPage(alerts, unreadable, keyset.cursor, tuple(sorted(keyset.ids)))
                return
            # A full page: the next starts at its last update time. A page all of one time cannot move the cursor,
            # so the next one skips what was read at that time instead.
            skip = skip + len(items) if keyset.cursor == start else 0
            start = keyset.cursor
            if page < MAX_PAGES:
                pages.ask(api.url(path), _mde_query(start, skip, top), page + 1)
            yield SweepPage(alerts, unreadable, keyset.cursor, tuple(sorted(keyset.ids)))
    finally:
        pages.close()
    raise ApiFailed(f"The sweep of {path} took more than {MAX_PAGES:,} pages; stopped there, the cursor kept.")


def _mde_query(start: datetime, skip: int, top: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "$filter": f"lastUpdateTime ge {_time(start)}",
        "$orderby": "lastUpdateTime asc",
        "$expand": "evidence",
        "$top": top,
    }
    if skip:
        params["$skip"] = skip
    return params


def _ascending(items: list[Any]) -> bool:
    """Whether the page's update times never go back (those it cannot read aside)."""
    times = [moment(raw.get("lastUpdateTime")) for raw in items if isinstance(raw, dict)]
    known = [when for when in times if when is not None]
    return all(earlier <= later for earlier, later in zip(known, known[1:], strict=False))


def _read_mde(items: list[Any], keyset: _Keyset, portal: str) -> tuple[list[SweptAlert], int]:
    alerts: list[SweptAlert] = []
    unreadable = 0
    for raw in items:
        reported = text(raw.get("computerDnsName"), parse.MACHINE_NAME_LENGTH) if isinstance(raw, dict) else ""
        alert = parse.from_mde(raw, reported, "", portal)
        if alert is None:
            unreadable += 1
        elif keyset.take(alert.id, alert.last_update):
            alerts.append(SweptAlert(alert, alert.machine_name, alert.device_id))
    return alerts, unreadable


def _mde_unordered(api: ApiClient, keyset: _Keyset, top: int, path: str, portal: str) -> Iterator[SweepPage]:
    note = "Defender refused $orderby, so the cursor moves only when the whole sweep is stored."
    params: dict[str, Any] = {"$filter": f"lastUpdateTime ge {_time(keyset.cursor)}", "$expand": "evidence"}
    yield from _unordered(
        api, keyset, path, {**params, "$top": top}, top, note, lambda items: _read_mde(items, keyset, portal)
    )


def _unordered(
    api: ApiClient,
    keyset: _Keyset,
    path: str,
    params: dict[str, Any],
    top: int | None,
    note: str,
    read: Any,
    headers: Mapping[str, str] | None = None,
) -> Iterator[SweepPage]:
    """Pages by @odata.nextLink (or $skip after a full page without one); only the last one moves the cursor, since
    an unordered page says nothing of what the next holds. The keyset still drops what the previous sweep stored."""
    url, query, received = api.url(path), dict(params), 0
    for page in range(1, MAX_PAGES + 1):
        data = api.get_json(url, query, page, headers)
        items = _items(data, path, page)
        alerts, unreadable = read(items)
        received += len(items)
        link = data.get("@odata.nextLink") if isinstance(data, dict) else None
        if link:
            url, query = api._own_link(link, path, page), {}
        elif top and len(items) >= top:
            url, query = api.url(path), {**params, "$skip": received}
        else:
            yield SweepPage(alerts, unreadable, keyset.cursor, tuple(sorted(keyset.ids)), note)
            return
        yield SweepPage(alerts, unreadable, None, (), note)
    raise ApiFailed(f"The sweep of {path} took more than {MAX_PAGES:,} pages; stopped there, the cursor kept.")


def machine_addresses(api: ApiClient) -> dict[str, set[str]]:
    """{machine ID: its IP addresses} of every machine of the tenant (lastIpAddress and ipAddresses): one call, unless
    the tenant has more than 10,000 machines."""
    path = f"{parse.api_prefix(api.settings)}/machines"
    addresses: dict[str, set[str]] = {}
    try:
        for machine in api.iter_items(path, {}, MDE_MAX_TOP):
            if not isinstance(machine, dict):
                continue
            machine_id = identifier(machine.get("id"), parse.ID_LENGTH)
            known = {text(machine.get("lastIpAddress"), parse.ADDRESS_LENGTH)}
            listed = machine.get("ipAddresses")
            for entry in listed if isinstance(listed, list) else ():
                if isinstance(entry, dict):
                    known.add(text(entry.get("ipAddress"), parse.ADDRESS_LENGTH))
            if machine_id:
                addresses[machine_id] = {address for address in known if address}
    except NotFound:
        return {}
    return addresses


# --- Graph --------------------------------------------------------------------------------------------------------


def _graph(api: ApiClient, keyset: _Keyset) -> Iterator[SweepPage]:
    path = f"{parse.api_prefix(api.settings)}/security/alerts_v2"
    time_filter = f"lastUpdateDateTime ge {_time(keyset.cursor)}"
    if not api.settings.graph_all_products:
        time_filter += f" and serviceSource eq '{parse.GRAPH_MDE_SOURCE}'"
    top = min(api.settings.page_size or parse.GRAPH_MAX_TOP, parse.GRAPH_MAX_TOP)

    def read(items: list[Any]) -> tuple[list[SweptAlert], int]:
        alerts: list[SweptAlert] = []
        unreadable = 0
        for raw in items:
            if not isinstance(raw, dict):
                unreadable += 1
                continue
            reported, device_id, addresses = graph_device(raw)
            alert = parse.from_graph(raw, reported, "", device_id)
            if alert is None:
                unreadable += 1
            elif keyset.take(alert.id, alert.last_update):
                alerts.append(SweptAlert(alert, reported, device_id, addresses))
        return alerts, unreadable

    try:
        # No $skip: Graph refuses it beyond 500, and sends @odata.nextLink.
        yield from _unordered(
            api, keyset, path, {"$filter": time_filter, "$top": top}, None, "", read, parse.GRAPH_HEADERS
        )
    except Throttled as throttled:
        raise Throttled(throttled.message, parse.GRAPH_RATE, throttled.code, throttled.retry_at) from None


def graph_device(raw: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    """(device name, MDE device ID, IP addresses) of an alerts_v2 alert's first device evidence; empty when it names
    no device (an e-mail alert)."""
    evidence = raw.get("evidence")
    for item in evidence if isinstance(evidence, list) else ():
        kind = item.get("@odata.type") if isinstance(item, dict) else None
        if isinstance(item, dict) and type(kind) is str and kind.endswith("deviceEvidence"):
            listed = item.get("ipInterfaces")
            addresses = tuple(
                address
                for address in (
                    text(entry, parse.ADDRESS_LENGTH) for entry in (listed if isinstance(listed, list) else ())
                )
                if address
            )
            reported = text(item.get("deviceDnsName"), parse.MACHINE_NAME_LENGTH)
            return reported, identifier(item.get("mdeDeviceId"), parse.ID_LENGTH), addresses
    return "", "", ()


# --- SIEM ---------------------------------------------------------------------------------------------------------


def _siem(api: ApiClient, keyset: _Keyset) -> Iterator[SweepPage]:
    """One answer: the exporter's detections processed since the cursor, grouped into their alerts."""
    data = api.get_json(api.url("/api/alerts"), {"sinceTimeUtc": _time(keyset.cursor)})
    rows = _items(data, "/api/alerts", 1)
    groups: dict[str, list[dict[str, Any]]] = {}
    unreadable = 0
    for raw in rows:
        alert_id = identifier(raw.get("AlertId"), parse.ID_LENGTH) if isinstance(raw, dict) else ""
        if not alert_id or not isinstance(raw, dict):
            unreadable += 1
            continue
        groups.setdefault(alert_id, []).append(raw)
    alerts: list[SweptAlert] = []
    for alert_id, detections in groups.items():
        first = detections[0]
        short_name = text(first.get("MachineName"), parse.MACHINE_NAME_LENGTH)
        reported = text(first.get("ComputerDnsName"), parse.MACHINE_NAME_LENGTH) or short_name
        alert = parse.from_siem(alert_id, detections, reported, "")
        addresses = tuple(parse._address_list(first))
        if keyset.take(alert.id, alert.last_update):
            alerts.append(SweptAlert(alert, reported, alert.device_id, addresses))
    yield SweepPage(alerts, unreadable, keyset.cursor, tuple(sorted(keyset.ids)))
