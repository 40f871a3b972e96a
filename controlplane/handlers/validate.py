"""Validation rules AWS applies beyond the model (ids, node types, ports, windows, tags, paging),
with AWS's errors. Pure functions of their arguments: what needs the request context is in
`defaults` (values chosen for the caller) and `lookup` (resources read from the store)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from controlplane import catalog, windows
from controlplane.model import messages as m
from controlplane.model.errors import (
    InvalidParameterCombinationException,
    InvalidParameterValueException,
    TagQuotaPerResourceExceeded,
)
from controlplane.state.records import Record, Tag
from controlplane.state.store import Store

T = TypeVar("T")
R = TypeVar("R", bound=Record)

MAX_TAGS = 50  # AWS's per-resource quota
MAX_RETENTION_DAYS = 35

_ID = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?!-))*$")


def invalid(message: str) -> InvalidParameterValueException:
    return InvalidParameterValueException(message)


def combination(message: str) -> InvalidParameterCombinationException:
    return InvalidParameterCombinationException(message)


def unsupported(name: str) -> InvalidParameterCombinationException:
    return combination(f"{name} is not supported by elasticache-local yet.")


def resource_id(value: str, what: str, max_len: int) -> str:
    """AWS's identifier rule: 1..max_len letters, digits, hyphens; a letter first; no trailing
    hyphen and no two hyphens in a row. Stored lower-case."""
    if not value or len(value) > max_len or not _ID.match(value) or value.endswith("-"):
        raise invalid(
            f"Invalid {what}: {value}. The {what} must begin with a letter, contain only "
            f"ASCII letters, digits, and hyphens, not end with a hyphen or contain two consecutive "
            f"hyphens, and be 1 to {max_len} characters long."
        )
    return value.lower()


def maintenance_window(value: str) -> str:
    """ddd:hh24:mi-ddd:hh24:mi, UTC, at least 60 minutes."""
    window = _parse(value, windows.WEEK)
    if window is None:
        raise invalid(f"Invalid maintenance window format: {value}. Expected ddd:hh24:mi-ddd:hh24:mi.")
    if window.length < 60:
        raise invalid("The maintenance window must be at least 60 minutes.")
    return value.lower()


def snapshot_window(value: str) -> str:
    """hh24:mi-hh24:mi, UTC, at least 60 minutes."""
    window = _parse(value, windows.DAY)
    if window is None:
        raise invalid(f"Invalid snapshot window format: {value}. Expected hh24:mi-hh24:mi.")
    if window.length < 60:
        raise invalid("The snapshot window must be at least 60 minutes.")
    return value


def _parse(value: str, period: int) -> windows.Window | None:
    try:
        window = windows.parse(value)
    except ValueError:
        return None
    return window if window.period == period else None


def windows_overlap() -> InvalidParameterCombinationException:
    """The one refusal of overlapping windows, for Create and Modify alike."""
    return combination("The snapshot window and the maintenance window must not overlap.")


def no_overlap(maintenance: str | None, snapshot: str | None) -> None:
    """AWS refuses a daily snapshot window that shares a minute with the weekly maintenance window."""
    if maintenance and snapshot and windows.overlap(maintenance, snapshot):
        raise windows_overlap()


def node_type(value: str | None) -> str:
    if not value:
        raise invalid("The parameter CacheNodeType must be provided and must not be null.")
    if value not in catalog.NODE_TYPES:
        raise invalid(f"Invalid CacheNodeType: {value}")
    return value


def port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise invalid(f"Invalid port: {value}")
    return value


def retention(days: int) -> int:
    """SnapshotRetentionLimit: how many days automatic backups are kept."""
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise invalid(f"SnapshotRetentionLimit must be between 0 and {MAX_RETENTION_DAYS} days.")
    return days


def availability_zones(region: str, azs: Sequence[str]) -> None:
    zones = catalog.availability_zones(region)
    for az in azs:
        if az not in zones:
            raise invalid(f"Invalid availability zone: {az}. Valid zones in {region}: {', '.join(zones)}.")


def ipv4_only(network_type: str | None, ip_discovery: str | None) -> None:
    if (network_type or "ipv4") != "ipv4" or (ip_discovery or "ipv4") != "ipv4":
        raise invalid("Only the ipv4 network type is supported by elasticache-local (nodes use loopback "
                      "IPv4 addresses).")


def tag_quota(count: int) -> None:
    if count > MAX_TAGS:
        raise TagQuotaPerResourceExceeded(f"A resource can have at most {MAX_TAGS} tags.")


def tags(items: Sequence[m.Tag]) -> dict[str, str]:
    """Tags as given: key -> value, the last of a repeated key wins."""
    out: dict[str, str] = {}
    for item in items:
        key = item.get("Key")
        if not key:
            raise invalid("Tag keys must not be empty.")
        out[key] = item.get("Value") or ""
    return out


def tag_records(items: Sequence[m.Tag]) -> list[Tag]:
    """A new resource's tags, within AWS's quota."""
    tag_quota(len(items))
    return [Tag(key=k, value=val) for k, val in tags(items).items()]


def page_size(max_records: int | None, default: int = 100, low: int = 20, high: int = 100) -> int:
    """MaxRecords as AWS takes it: absent means `default`, else it must be within [low, high]."""
    if max_records is None:
        return default
    if not low <= max_records <= high:
        raise invalid(f"MaxRecords must be between {low} and {high}.")
    return max_records


def marker_number(marker: str) -> int:
    """Our markers are numbers (an index or a creation sequence); anything else is refused."""
    if not marker.isascii() or not marker.isdigit() or len(marker) > 18:
        raise invalid(f"Invalid marker: {marker}")
    return int(marker)


def page(items: Sequence[T], max_records: int | None, marker: str | None, default: int = 100,
         low: int = 20, high: int = 100, key: Callable[[T], int] | None = None) -> tuple[list[T], str | None]:
    """Marker/MaxRecords paging as AWS does it: MaxRecords in [low, high]; the marker is opaque.
    With `key` (a unique number per item, ascending in `items`: a creation sequence) the marker
    names the last item returned, so resources deleted or created between pages neither shift
    nor repeat the next page; without it (fixed lists), it is the index of the next item."""
    size = page_size(max_records, default, low, high)
    start = 0
    if marker:
        if key is not None:
            start = bisect.bisect_right(items, marker_number(marker), key=key)
        elif marker_number(marker) > len(items):
            raise invalid(f"Invalid marker: {marker}")
        else:
            start = int(marker)
    chunk = list(items[start:start + size])
    if start + size >= len(items):
        return chunk, None
    return chunk, str(key(chunk[-1])) if key is not None else str(start + size)


def listing(member: str, records: Sequence[R], params: Mapping[str, Any], shape: Callable[[R], object],
            store: Store, default: int = 100, high: int = 100) -> dict[str, Any]:
    """One page of a Describe over stored records, in creation order (the marker names the last
    record shown): {member: [shape(record), ...], "Marker": ... while more follow}."""
    chunk, marker = page(records, params.get("MaxRecords"), params.get("Marker"), default=default, high=high,
                         key=lambda r: store.seq(r.key))
    out: dict[str, Any] = {member: [shape(r) for r in chunk]}
    if marker:
        out["Marker"] = marker
    return out
