"""What AWS chooses when the caller leaves a value out: maintenance and snapshot windows, engine
versions; each validated the same way when the caller does give it."""

from __future__ import annotations

import zlib

from controlplane import catalog, windows
from controlplane.catalog import resolve_version
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext

# The day AWS's pseudo-random pick lands on, by hash: kept in this order so ids keep their days.
_DAY_PICK = (6, 0, 1, 2, 3, 4, 5)  # sun, mon, ..., sat as indexes of windows.DAYS
_HOUR = 60


def default_maintenance_window(resource_id: str, region: str, avoid: str | None = None) -> str:
    """A stable pseudo-random hour in the region's 8-hour block, as AWS picks one; with `avoid`
    (a snapshot window) the first hour from there that does not overlap it, in the block first."""
    h = zlib.crc32(resource_id.encode())
    day = _DAY_PICK[h % 7] * windows.DAY
    block = catalog.MAINTENANCE_BLOCK_START_HOUR.get(region, 3)
    first = (h >> 3) % 8
    hours = [block + (first + k) % 8 for k in range(8)] + [block + 8 + k for k in range(16)]
    for hour in hours:
        window = windows.format_weekly(day + hour * _HOUR, _HOUR)
        if avoid is None or not windows.overlap(window, avoid):
            return window
    raise v.windows_overlap()  # the snapshot window leaves no hour of the day free


def default_snapshot_window(resource_id: str, avoid: str | None = None) -> str:
    """A stable pseudo-random hour; with `avoid` (the maintenance window) the first hour from
    there that does not overlap it."""
    first = (zlib.crc32(resource_id.encode()) >> 5) % 24
    for k in range(24):
        window = windows.format_daily((first + k) % 24 * _HOUR, _HOUR)
        if avoid is None or not windows.overlap(avoid, window):
            return window
    raise v.windows_overlap()  # the maintenance window covers every hour of a day


def maintenance_window(ctx: RequestContext, requested: str | None, resource_id: str) -> str:
    """A new resource's maintenance window where it has no snapshot window (memcached)."""
    return v.maintenance_window(requested) if requested else default_maintenance_window(resource_id, ctx.region)


def windows_for(ctx: RequestContext, maintenance: str | None, snapshot: str | None,
                resource_id: str) -> tuple[str, str]:
    """The maintenance and snapshot windows of a new resource: each as given or chosen for it,
    never overlapping; a default steers clear of the window given."""
    given = v.maintenance_window(maintenance) if maintenance else None
    daily = v.snapshot_window(snapshot) if snapshot else None
    if given and daily:
        v.no_overlap(given, daily)
        return given, daily
    if daily:
        return default_maintenance_window(resource_id, ctx.region, avoid=daily), daily
    given = given or default_maintenance_window(resource_id, ctx.region)
    return given, default_snapshot_window(resource_id, avoid=given)


def engine_version(ctx: RequestContext, engine: str, requested: str | None) -> str:
    """AWS's release of the requested line (or of the engine's default): one AWS has, and with
    strict versions one this machine runs. "7.1" is stored and shown as 7.1.0 from the create
    response on, as AWS shows it."""
    version = requested or catalog.DEFAULT_VERSIONS[engine]
    if catalog.known_version(engine, version) is None:
        raise v.combination(f"Cannot find version {version} for {engine}")
    version = catalog.aws_release(engine, version)
    if ctx.services.settings.strict_engine_versions:
        available = ctx.services.available_versions()
        chosen, exact = resolve_version(engine, version, available, strict=True)
        if chosen is None or not exact:
            have = ", ".join(available.get(engine, ())) or "none"
            raise v.invalid(
                f"{engine} {version} cannot run on this machine (installed: {have}). Install it, "
                "or unset ELASTICACHE_LOCAL_STRICT_ENGINE_VERSIONS to run the nearest installed version."
            )
    return version


def version_change(ctx: RequestContext, engine: str, current: str, requested: str | None) -> str | None:
    """ModifyCacheCluster / ModifyReplicationGroup EngineVersion: the release to move to, or None
    when it is the one the cache has ("7.1" and "7.1.0" are the same); never an older one."""
    if not requested:
        return None
    release, now = engine_version(ctx, engine, requested), catalog.aws_release(engine, current)
    if release == now:
        return None
    if catalog.version_key(release) < catalog.version_key(now):
        raise v.combination(f"Cannot modify {engine} from {now} to {release}")  # AWS's text
    return release

