"""DescribeEvents: what the reconciler wrote, filtered by time window and source."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import messages as m
from controlplane.state import shapes

DEFAULT_WINDOW = timedelta(hours=1)
RETENTION = timedelta(days=14)
# AWS keeps 14 days of events and refuses a window reaching further back (a Duration above 14
# days' minutes, a StartTime before them) with InvalidParameterValue, rather than answering less.
MAX_DURATION_MINUTES = int(RETENTION.total_seconds() // 60)


def _start(end: datetime, duration_minutes: int | None) -> datetime:
    if duration_minutes is None:
        return end - DEFAULT_WINDOW
    if not 0 <= duration_minutes <= MAX_DURATION_MINUTES:
        raise v.invalid(f"Duration must be between 0 and {MAX_DURATION_MINUTES} minutes: events are kept for "
                        "14 days.")
    return end - timedelta(minutes=duration_minutes)


def describe_events(ctx: RequestContext, params: m.DescribeEventsMessage) -> m.EventsMessage:
    now = ctx.services.clock.now()
    source_type = params.get("SourceType")
    source_id = params.get("SourceIdentifier")
    if source_id and not source_type:
        raise v.combination("SourceType must be specified when SourceIdentifier is given.")
    end = params.get("EndTime") or now
    start = params.get("StartTime")
    if start is None:
        start = _start(end, params.get("Duration"))
    if start > end:
        raise v.invalid("StartTime must be before EndTime.")
    if start < now - RETENTION:
        raise v.invalid(f"StartTime {start.isoformat()} is more than 14 days ago: events are kept for 14 days.")
    size = v.page_size(params.get("MaxRecords"))
    after = v.marker_number(params["Marker"]) if params.get("Marker") else None
    # One more than a page: whether there is a next page, without reading the rest.
    events = ctx.services.store.events(ctx.account, ctx.region, start, end, source_type,
                                       source_id.lower() if source_id else None, after_seq=after, limit=size + 1)
    chunk = events[:size]
    out: m.EventsMessage = {"Events": [cast(m.Event, shapes.event(e)) for e in chunk]}
    if len(events) > size:
        out["Marker"] = str(chunk[-1].seq)
    return out


def recent_events(ctx: RequestContext, limit: int, sources: dict[str, str] | None = None) -> list[m.Event]:
    """The newest `limit` events kept (DescribeEvents' 14 days), newest first: of every source,
    or of `sources` only (identifier -> SourceType, as DescribeEvents filters them). Not an AWS
    operation: what a timeline shows, read newest first instead of paging through two weeks."""
    now = ctx.services.clock.now()
    store = ctx.services.store
    wanted: list[tuple[str | None, str | None]] = (
        [(None, None)] if sources is None else [(kind, ident.lower()) for ident, kind in sources.items()])
    found = [e for kind, ident in wanted
             for e in store.events(ctx.account, ctx.region, now - RETENTION, now, kind, ident, limit=limit,
                                   newest_first=True)]
    found.sort(key=lambda e: e.seq, reverse=True)
    return [cast(m.Event, shapes.event(e)) for e in found[:limit]]


HANDLERS: HandlerTable = {"DescribeEvents": describe_events}
