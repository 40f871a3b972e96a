"""CreateCacheParameterGroup, ModifyCacheParameterGroup, ResetCacheParameterGroup,
DeleteCacheParameterGroup, DescribeCacheParameterGroups, DescribeCacheParameters and
DescribeEngineDefaultParameters with AWS's rules, and the parameter group a cache names."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

from controlplane import catalog
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import ensure_builtin
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state.arns import arn
from controlplane.state.parameter_groups import (
    CLUSTER_ON,
    DEFAULT_PREFIX,
    CacheParameterGroup,
    CacheParameterGroupSpec,
    builtin_group,
    default_names,
)
from controlplane.state.parameters import FAMILIES, Param, catalogue, check_value
from controlplane.state.records import CacheCluster, ReplicationGroup

MAX_GROUPS = 150  # AWS's quota of parameter groups per region
MAX_PER_CALL = 20  # parameters per ModifyCacheParameterGroup / ResetCacheParameterGroup
MAX_NAME = 255
MAX_DESCRIPTION = 255


def ensure_defaults(ctx: RequestContext) -> None:
    """Every family's default groups, stored on first use (tags and paging see them as any other)."""
    for family in FAMILIES:
        for name in default_names(family):
            ensure_builtin(ctx, CacheParameterGroup, name, partial(builtin_group, family, name))


def get_parameter_group(ctx: RequestContext, name: str) -> CacheParameterGroup:
    ensure_defaults(ctx)
    rec = ctx.services.store.get(ctx.key(CacheParameterGroup.KIND, name.lower()), CacheParameterGroup)
    if rec is None:
        raise e.CacheParameterGroupNotFoundFault(f"CacheParameterGroup {name[:300]} not found.")
    return rec


def group_for_cache(ctx: RequestContext, engine: str, version: str, requested: str | None,
                    cluster_mode: bool = False) -> str:
    """The group a cache uses: the one named (of the version's family), or the family's default."""
    family = catalog.family_of(engine, version)
    if not requested:
        return f"default.{family}" + (CLUSTER_ON if cluster_mode and family in FAMILIES
                                      and "cluster-enabled" in catalogue(family) else "")
    rec = get_parameter_group(ctx, requested)
    if rec.spec.family != family:
        raise v.invalid(f"The parameter group {rec.id} has family {rec.spec.family}, which does not match the "
                        f"engine version {version} of family {family}.")
    if engine != "memcached" and "cluster-enabled" in catalogue(family) and (
            rec.value("cluster-enabled") == "yes") != cluster_mode:
        raise v.combination(f"The parameter group {rec.id} has cluster-enabled {rec.value('cluster-enabled')}, "
                            f"which does not match the cluster mode of this cache.")
    return rec.id


def group_on_modify(ctx: RequestContext, engine: str, current: str, version_now: str, version_new: str,
                    requested: str | None, cluster_mode: bool = False) -> str | None:
    """The group after a Modify: the one named (of the new version's family); else, when the new
    engine version is of another family, that family's default in place of a default group (a
    custom group must be replaced by name). None: unchanged."""
    if requested:
        return group_for_cache(ctx, engine, version_new, requested, cluster_mode)
    old_family, new_family = catalog.family_of(engine, version_now), catalog.family_of(engine, version_new)
    if old_family == new_family:
        return None
    if current.startswith(DEFAULT_PREFIX):
        return group_for_cache(ctx, engine, version_new, None, cluster_mode)
    raise v.combination(f"Engine version {version_new} is of parameter group family {new_family}: name a parameter "
                        f"group of that family (CacheParameterGroupName) to replace {current}, of family "
                        f"{old_family}.")


def _name(value: str) -> str:
    return v.resource_id(value, "CacheParameterGroupName", MAX_NAME)


def _writable(rec: CacheParameterGroup) -> None:
    if rec.spec.builtin:
        raise v.invalid(f"Default parameter groups cannot be modified or deleted: {rec.id} is a default group.")


def group_shape(rec: CacheParameterGroup) -> m.CacheParameterGroup:
    return {"CacheParameterGroupName": rec.id, "CacheParameterGroupFamily": rec.spec.family,
            "Description": rec.spec.description, "IsGlobal": False,
            "ARN": arn(rec.region, rec.account, rec.KIND, rec.id)}


def _users(ctx: RequestContext, name: str) -> list[str]:
    store = ctx.services.store
    clusters = [c.id for c in store.records(CacheCluster, ctx.account, ctx.region)
                if c.spec.parameter_group == name and not c.spec.replication_group_id]
    groups = [g.id for g in store.records(ReplicationGroup, ctx.account, ctx.region) if g.spec.parameter_group == name]
    return clusters + groups


def _tell_users(ctx: RequestContext, name: str) -> None:
    """The caches using the group apply its new values (their reconcilers compare and act)."""
    store = ctx.services.store
    for c in store.records(CacheCluster, ctx.account, ctx.region):
        if c.spec.parameter_group == name and not c.spec.replication_group_id:
            ctx.services.enqueue(c.key)
    for g in store.records(ReplicationGroup, ctx.account, ctx.region):
        if g.spec.parameter_group == name:
            ctx.services.enqueue(g.key)


def create_cache_parameter_group(ctx: RequestContext, params: m.CreateCacheParameterGroupMessage
                                 ) -> m.CreateCacheParameterGroupResult:
    name = _name(params["CacheParameterGroupName"])
    family = params["CacheParameterGroupFamily"]
    if family not in FAMILIES:
        raise v.invalid(f"The parameter CacheParameterGroupFamily is not valid: {family[:100]}. Valid families: "
                        f"{', '.join(FAMILIES)}.")
    description = params["Description"]
    if len(description) > MAX_DESCRIPTION:
        raise v.invalid(f"Description must be at most {MAX_DESCRIPTION} characters.")
    ensure_defaults(ctx)
    store = ctx.services.store
    if store.get(ctx.key(CacheParameterGroup.KIND, name), CacheParameterGroup) is not None:
        raise e.CacheParameterGroupAlreadyExistsFault(f"Parameter group {name} already exists.")
    tags = v.tag_records(params.get("Tags", []))
    custom = [g for g in store.records(CacheParameterGroup, ctx.account, ctx.region) if not g.spec.builtin]
    if len(custom) >= MAX_GROUPS:
        raise e.CacheParameterGroupQuotaExceededFault(
            f"The request cannot be processed because it would exceed the allowed number of cache parameter "
            f"groups ({MAX_GROUPS}).")
    rec = CacheParameterGroup(account=ctx.account, region=ctx.region, id=name, created_at=ctx.services.clock.now(),
                              tags=tags, spec=CacheParameterGroupSpec(family=family, description=description))
    if not store.create(rec):
        raise e.CacheParameterGroupAlreadyExistsFault(f"Parameter group {name} already exists.")
    return {"CacheParameterGroup": group_shape(rec)}


def _parameter(rec: CacheParameterGroup, name: str | None) -> Param:
    params = catalogue(rec.spec.family)
    if not name or name not in params:
        raise v.invalid(f"Unknown parameter for family {rec.spec.family}: {(name or '')[:200]}")
    return params[name]


def _names(values: Sequence[m.ParameterNameValue], what: str) -> None:
    if len(values) > MAX_PER_CALL:
        raise v.invalid(f"At most {MAX_PER_CALL} parameters may be {what} in one request.")


def _change(ctx: RequestContext, rec: CacheParameterGroup, values: dict[str, str]) -> None:
    def change(r: CacheParameterGroup) -> None:
        r.spec.values = values
        r.generation += 1

    if ctx.services.store.update(rec.key, CacheParameterGroup, change) is None:
        raise e.CacheParameterGroupNotFoundFault(f"CacheParameterGroup {rec.id} not found.")
    _tell_users(ctx, rec.id)


def modify_cache_parameter_group(ctx: RequestContext, params: m.ModifyCacheParameterGroupMessage
                                 ) -> m.CacheParameterGroupNameMessage:
    rec = get_parameter_group(ctx, params["CacheParameterGroupName"])
    _writable(rec)
    items = params["ParameterNameValues"]
    if not items:
        raise v.invalid("The parameter ParameterNameValues must contain at least one parameter.")
    _names(items, "modified")
    values = dict(rec.spec.values)
    for item in items:
        param = _parameter(rec, item.get("ParameterName"))
        value = item.get("ParameterValue")
        if value is None:
            raise v.invalid(f"The parameter ParameterValue must be provided for parameter {param.name}.")
        if not param.modifiable:
            raise v.invalid(f"Parameter {param.name} is not modifiable.")
        why = check_value(param, value)
        if why is not None:
            raise v.invalid(f"Invalid value {value[:100]!r} for parameter {param.name}: it {why}.")
        values[param.name] = value
    _change(ctx, rec, values)
    return {"CacheParameterGroupName": rec.id}


def reset_cache_parameter_group(ctx: RequestContext, params: m.ResetCacheParameterGroupMessage
                                ) -> m.CacheParameterGroupNameMessage:
    rec = get_parameter_group(ctx, params["CacheParameterGroupName"])
    _writable(rec)
    items = params.get("ParameterNameValues") or []
    everything = params.get("ResetAllParameters", False)
    if everything and items:
        raise v.combination("ResetAllParameters and ParameterNameValues cannot be given together.")
    if not everything and not items:
        raise v.combination("Either ResetAllParameters must be true or ParameterNameValues must name parameters.")
    _names(items, "reset")
    values = {} if everything else dict(rec.spec.values)
    for item in items:
        values.pop(_parameter(rec, item.get("ParameterName")).name, None)
    _change(ctx, rec, values)
    return {"CacheParameterGroupName": rec.id}


def delete_cache_parameter_group(ctx: RequestContext, params: m.DeleteCacheParameterGroupMessage) -> None:
    rec = get_parameter_group(ctx, params["CacheParameterGroupName"])
    _writable(rec)
    users = _users(ctx, rec.id)
    if users:
        raise e.InvalidCacheParameterGroupStateFault(
            f"One or more cache clusters are still members of parameter group {rec.id} ({', '.join(users[:5])}), "
            "so the group cannot be deleted.")
    ctx.services.store.delete(rec.key)


def describe_cache_parameter_groups(ctx: RequestContext, params: m.DescribeCacheParameterGroupsMessage
                                    ) -> m.CacheParameterGroupsMessage:
    ensure_defaults(ctx)
    store = ctx.services.store
    name = params.get("CacheParameterGroupName")
    groups = [get_parameter_group(ctx, name)] if name else store.records(CacheParameterGroup, ctx.account, ctx.region)
    return cast(m.CacheParameterGroupsMessage, v.listing("CacheParameterGroups", groups, params, group_shape, store))


def _parameter_shape(param: Param, value: str, source: str) -> m.Parameter:
    out: m.Parameter = {"ParameterName": param.name, "ParameterValue": value, "Description": param.description,
                        "Source": source, "DataType": param.data_type, "IsModifiable": param.modifiable,
                        "MinimumEngineVersion": param.minimum_version,
                        "ChangeType": "immediate" if param.change_type == "immediate" else "requires-reboot"}
    if param.allowed:
        out["AllowedValues"] = param.allowed
    return out


def _paged(items: list[m.Parameter], params: m.DescribeCacheParametersMessage | m.DescribeEngineDefaultParametersMessage
           ) -> tuple[list[m.Parameter], str | None]:
    return v.page(items, params.get("MaxRecords"), params.get("Marker"))


def describe_cache_parameters(ctx: RequestContext, params: m.DescribeCacheParametersMessage
                              ) -> m.CacheParameterGroupDetails:
    rec = get_parameter_group(ctx, params["CacheParameterGroupName"])
    source = params.get("Source")
    if source is not None and source not in ("user", "system", "engine-default"):
        raise v.invalid(f"Invalid Source: {source[:100]}. Valid values: user, system, engine-default.")
    items: list[m.Parameter] = []
    for param in catalogue(rec.spec.family).values():
        shown = "user" if param.name in rec.spec.values else "system"
        if source in (None, shown) or (source == "engine-default" and shown == "system"):
            items.append(_parameter_shape(param, rec.value(param.name), shown))
    chunk, marker = _paged(items, params)
    out: m.CacheParameterGroupDetails = {"Parameters": chunk, "CacheNodeTypeSpecificParameters": []}
    if marker:
        out["Marker"] = marker
    return out


def describe_engine_default_parameters(ctx: RequestContext, params: m.DescribeEngineDefaultParametersMessage
                                       ) -> m.DescribeEngineDefaultParametersResult:
    family = params["CacheParameterGroupFamily"]
    if family not in FAMILIES:
        raise v.invalid(f"The parameter CacheParameterGroupFamily is not valid: {family[:100]}.")
    items = [_parameter_shape(p, p.default, "system") for p in catalogue(family).values()]
    chunk, marker = _paged(items, params)
    defaults: m.EngineDefaults = {"CacheParameterGroupFamily": family, "Parameters": chunk,
                                  "CacheNodeTypeSpecificParameters": []}
    if marker:
        defaults["Marker"] = marker
    return {"EngineDefaults": defaults}


HANDLERS: HandlerTable = {
    "CreateCacheParameterGroup": create_cache_parameter_group,
    "ModifyCacheParameterGroup": modify_cache_parameter_group,
    "ResetCacheParameterGroup": reset_cache_parameter_group,
    "DeleteCacheParameterGroup": delete_cache_parameter_group,
    "DescribeCacheParameterGroups": describe_cache_parameter_groups,
    "DescribeCacheParameters": describe_cache_parameters,
    "DescribeEngineDefaultParameters": describe_engine_default_parameters,
}
