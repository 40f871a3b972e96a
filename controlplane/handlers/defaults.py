"""What AWS chooses when the caller leaves a value out: maintenance and snapshot windows, engine
versions, parameter groups; each validated the same way when the caller does give it."""

from __future__ import annotations

import zlib

from controlplane import catalog
from controlplane.catalog import resolve_version
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.model.errors import CacheParameterGroupNotFoundFault

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def default_maintenance_window(resource_id: str, region: str) -> str:
    """A stable pseudo-random hour in the region's 8-hour block, as AWS picks one."""
    h = zlib.crc32(resource_id.encode())
    day = _DAYS[h % 7]
    start = catalog.MAINTENANCE_BLOCK_START_HOUR.get(region, 3) + (h >> 3) % 8
    end_day = day
    if start >= 23:
        start %= 24
        if start == 23:
            end_day = _DAYS[(h + 1) % 7]
    end = (start + 1) % 24
    return f"{day}:{start:02d}:00-{end_day}:{end:02d}:00"


def default_snapshot_window(resource_id: str) -> str:
    start = (zlib.crc32(resource_id.encode()) >> 5) % 24
    return f"{start:02d}:00-{(start + 1) % 24:02d}:00"


def maintenance_window(ctx: RequestContext, requested: str | None, resource_id: str) -> str:
    return v.maintenance_window(requested) if requested else default_maintenance_window(resource_id, ctx.region)


def snapshot_window(requested: str | None, resource_id: str) -> str:
    return v.snapshot_window(requested) if requested else default_snapshot_window(resource_id)


def engine_version(ctx: RequestContext, engine: str, requested: str | None) -> str:
    """The requested version (or the engine's default): one AWS has, and with strict versions
    one this machine runs."""
    version = requested or catalog.DEFAULT_VERSIONS[engine]
    if catalog.known_version(engine, version) is None:
        raise v.combination(f"Cannot find version {version} for {engine}")
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


def parameter_group(engine: str, version: str, requested: str | None) -> str:
    """Only the default parameter group of the version's family exists so far."""
    default = f"default.{catalog.family_of(engine, version)}"
    if requested and requested != default:
        raise CacheParameterGroupNotFoundFault(f"CacheParameterGroup {requested} not found.")
    return default
