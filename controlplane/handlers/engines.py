"""DescribeCacheEngineVersions: AWS's versions, each marked with what this machine runs for it."""

from __future__ import annotations

from controlplane import catalog
from controlplane.catalog import resolve_version
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import messages as m

_ENGINE_NAMES = {"redis": "Redis", "valkey": "Valkey", "memcached": "memcached"}


def _defaults(entries: list[catalog.EngineVersion], version: str | None) -> list[catalog.EngineVersion]:
    """DefaultOnly: the default version of each engine; with an EngineVersion, the default of
    that engine and major version combination: the newest of the version's parameter-group family
    (redis "6.0" -> 6.2, memcached "1.5.10" -> 1.5.16)."""
    if version is None:
        return [e for e in entries if e.version == catalog.DEFAULT_VERSIONS[e.engine]]
    out: list[catalog.EngineVersion] = []
    for name in dict.fromkeys(e.engine for e in entries):
        family = catalog.family_of(name, version)
        same = [e for e in entries if e.engine == name and e.family == family]
        if same:
            out.append(max(same, key=lambda e: catalog.version_key(e.version)))
    return out


def describe_cache_engine_versions(ctx: RequestContext,
                                   params: m.DescribeCacheEngineVersionsMessage) -> m.CacheEngineVersionMessage:
    engine = (params.get("Engine") or "").lower() or None
    version = params.get("EngineVersion")
    family = params.get("CacheParameterGroupFamily")
    entries = [e for e in catalog.ENGINE_VERSIONS
               if (engine is None or e.engine == engine) and (family is None or e.family == family)]
    if params.get("DefaultOnly"):
        entries = _defaults(entries, version)
    elif version is not None:
        entries = [e for e in entries if e.version == version]
    available = ctx.services.available_versions()
    chunk, marker = v.page(entries, params.get("MaxRecords"), params.get("Marker"))
    out_items: list[m.CacheEngineVersion] = []
    for e in chunk:
        chosen, exact = resolve_version(e.engine, e.version, available, strict=False)
        if chosen is None:
            local = "no binary for this engine is installed here"
        elif exact:
            local = f"runs locally as {e.engine} {chosen}"
        else:
            local = f"not installed here; nodes run {e.engine} {chosen} instead"
        out_items.append({
            "Engine": e.engine,
            "EngineVersion": e.version,
            "CacheParameterGroupFamily": e.family,
            "CacheEngineDescription": _ENGINE_NAMES[e.engine],
            "CacheEngineVersionDescription": f"{e.description} ({local})",
        })
    out: m.CacheEngineVersionMessage = {"CacheEngineVersions": out_items}
    if marker:
        out["Marker"] = marker
    return out


HANDLERS: HandlerTable = {"DescribeCacheEngineVersions": describe_cache_engine_versions}
