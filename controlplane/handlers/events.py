"""DescribeEvents: what the reconciler wrote, filtered by time window and source."""

from __future__ import annotations

from datetime import datetime, timedelta

from controlplane.handlers import validate as v
from controlplane.handlers.context import Handler, Params, RequestContext, Result
from controlplane.state import shapes

DEFAULT_WINDOW = timedelta(hours=1)
RETENTION = timedelta(days=14)
# Nothing older than RETENTION exists: a longer Duration asks for the same events (and a huge one
# would not fit a datetime).
MAX_DURATION_MINUTES = int(RETENTION.total_seconds() // 60) + 1


def _before(end: datetime, window: timedelta) -> datetime:
    """end - window, or the earliest time there is when that is before year 1."""
    try:
        return end - window
    except OverflowError:
        return datetime.min.replace(tzinfo=end.tzinfo)


def describe_events(ctx: RequestContext, params: Params) -> Result:
    now = ctx.services.clock.now()
    source_type = params.get("SourceType")
    source_id = params.get("SourceIdentifier")
    if source_id and not source_type:
        raise v.combination("SourceType must be specified when SourceIdentifier is given.")
    end = params.get("EndTime") or now
    if params.get("StartTime") is not None:
        start = params["StartTime"]
    elif params.get("Duration") is not None:
        if params["Duration"] < 0:
            raise v.invalid("Duration must not be negative.")
        start = _before(end, timedelta(minutes=min(params["Duration"], MAX_DURATION_MINUTES)))
    else:
        start = _before(end, DEFAULT_WINDOW)
    if start > end:
        raise v.invalid("StartTime must be before EndTime.")
    # Events are kept for 14 days.
    start = max(start, now - RETENTION)
    events = ctx.services.store.events(ctx.account, ctx.region, start, end, source_type,
                                       source_id.lower() if source_id else None)
    chunk, marker = v.page(events, params, key=lambda e: e.seq)
    out: Result = {"Events": [shapes.event(e) for e in chunk]}
    if marker:
        out["Marker"] = marker
    return out


HANDLERS: dict[str, Handler] = {"DescribeEvents": describe_events}
