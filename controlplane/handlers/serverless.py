"""Serverless caches (state/serverless.py): Create, Describe, Modify, Delete, with AWS's rules:
names as other ElastiCache ids (40 characters), engines redis/valkey/memcached and their major
versions, CacheUsageLimits within AWS's bounds, a user group only for redis/valkey, snapshot
settings, a quota of 40 per region, changes only while `available`."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, cast

from controlplane.handlers import replication_groups
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.model import messages as m
from controlplane.model.errors import (
    InvalidReplicationGroupStateFault,
    InvalidServerlessCacheStateFault,
    InvalidUserGroupStateFault,
    ServerlessCacheAlreadyExistsFault,
    ServerlessCacheNotFoundFault,
    ServerlessCacheQuotaForCustomerExceededFault,
    UserGroupNotFoundFault,
)
from controlplane.state.arns import arn
from controlplane.state.records import ResourceKey
from controlplane.state.serverless import (
    ECPU_PER_SECOND,
    MAJOR_VERSIONS,
    MAX_CACHES,
    SHARD_NODE_TYPE,
    STORAGE_GB,
    ServerlessCache,
    ServerlessSpec,
    UsageLimits,
    backing_region,
)
from controlplane.state.users import UserGroup

NAME_LENGTH = 40
DESCRIPTION_LENGTH = 255
MAX_RETENTION = 35
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


def _get(ctx: RequestContext, name: str) -> ServerlessCache:
    rec = ctx.services.store.get(ResourceKey(ServerlessCache.KIND, ctx.account, ctx.region, name.lower()),
                                 ServerlessCache)
    if rec is None:
        raise ServerlessCacheNotFoundFault(f"Serverless cache {name} not found.")
    return rec


def shape(ctx: RequestContext, rec: ServerlessCache) -> m.ServerlessCache:
    spec, status = rec.spec, rec.status
    out: dict[str, Any] = {
        "ServerlessCacheName": rec.id, "Description": spec.description, "CreateTime": rec.created_at,
        "Status": rec.api_status(), "Engine": spec.engine, "MajorEngineVersion": spec.major_version,
        "FullEngineVersion": rec.full_version(), "SecurityGroupIds": spec.security_group_ids,
        "ARN": arn(rec.region, rec.account, ServerlessCache.KIND, rec.id), "SubnetIds": spec.subnet_ids,
        "SnapshotRetentionLimit": spec.snapshot_retention_limit, "NetworkType": "ipv4", "ConnectionType": "vpc",
    }
    limits = _limits_shape(spec.limits)
    if limits:
        out["CacheUsageLimits"] = limits
    if spec.kms_key_id:
        out["KmsKeyId"] = spec.kms_key_id
    if spec.user_group_id:
        out["UserGroupId"] = spec.user_group_id
    if spec.daily_snapshot_time:
        out["DailySnapshotTime"] = spec.daily_snapshot_time
    port, reader_port = rec.ports()
    if status.endpoint_host:  # the reader endpoint: the same address on the reader port, as in AWS
        out["Endpoint"] = {"Address": status.endpoint_host, "Port": port}
        out["ReaderEndpoint"] = {"Address": status.endpoint_host, "Port": reader_port}
    return cast(m.ServerlessCache, out)


def _limits_shape(limits: UsageLimits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    storage = {k: val for k, val in (("Maximum", limits.storage_max_gb), ("Minimum", limits.storage_min_gb))
               if val is not None}
    if storage:
        out["DataStorage"] = {**storage, "Unit": "GB"}
    ecpu = {k: val for k, val in (("Maximum", limits.ecpu_max), ("Minimum", limits.ecpu_min)) if val is not None}
    if ecpu:
        out["ECPUPerSecond"] = ecpu
    return out


def _bounded(value: int | None, bounds: tuple[int, int], what: str) -> int | None:
    if value is not None and not bounds[0] <= value <= bounds[1]:
        raise v.invalid(f"{what} must be between {bounds[0]} and {bounds[1]}; got {value}.")
    return value


def _usage_limits(given: m.CacheUsageLimits | None, current: UsageLimits | None = None) -> UsageLimits:
    limits = current.model_copy() if current is not None else UsageLimits()
    if not given:
        return limits
    storage = given.get("DataStorage")
    if storage is not None:
        if storage.get("Unit") != "GB":
            raise v.invalid("CacheUsageLimits.DataStorage.Unit must be GB.")
        limits.storage_max_gb = _bounded(storage.get("Maximum"), STORAGE_GB, "DataStorage Maximum (GB)")
        limits.storage_min_gb = _bounded(storage.get("Minimum"), STORAGE_GB, "DataStorage Minimum (GB)")
    ecpu = given.get("ECPUPerSecond")
    if ecpu is not None:
        limits.ecpu_max = _bounded(ecpu.get("Maximum"), ECPU_PER_SECOND, "ECPUPerSecond Maximum")
        limits.ecpu_min = _bounded(ecpu.get("Minimum"), ECPU_PER_SECOND, "ECPUPerSecond Minimum")
    for low, high, what in ((limits.storage_min_gb, limits.storage_max_gb, "DataStorage"),
                            (limits.ecpu_min, limits.ecpu_max, "ECPUPerSecond")):
        if low is not None and high is not None and low > high:
            raise v.combination(f"{what} Minimum ({low}) cannot be greater than its Maximum ({high}).")
    return limits


def _engine(value: str) -> str:
    engine = value.lower()
    if engine not in MAJOR_VERSIONS:
        raise v.invalid(f"Invalid engine: {value}. Serverless caches run valkey, redis or memcached.")
    return engine


def _major(engine: str, value: str | None) -> str:
    offered = MAJOR_VERSIONS[engine]
    if value is None:
        return offered[0]
    if value not in offered:
        raise v.invalid(f"Invalid MajorEngineVersion {value} for {engine}: serverless {engine} offers "
                        f"{', '.join(offered)}.")
    return value


def _user_group(ctx: RequestContext, engine: str, group_id: str | None) -> str | None:
    if group_id is None:
        return None
    if engine == "memcached":
        raise v.combination("UserGroupId is available for Valkey and Redis OSS serverless caches only.")
    group = ctx.services.store.get(ResourceKey(UserGroup.KIND, ctx.account, ctx.region, group_id), UserGroup)
    if group is None:
        raise UserGroupNotFoundFault(f"User group {group_id} not found.")
    if group.api_status() != "active":
        raise InvalidUserGroupStateFault(f"User group {group_id} is not active (it is {group.api_status()}).")
    if group.spec.engine != engine and not {group.spec.engine, engine} <= {"redis", "valkey"}:
        raise v.combination(f"User group {group_id} is for {group.spec.engine}, not {engine}.")
    return group.id


def _snapshot_settings(retention: int | None, daily: str | None) -> None:
    if retention is not None and not 0 <= retention <= MAX_RETENTION:
        raise v.invalid(f"SnapshotRetentionLimit must be between 0 and {MAX_RETENTION} days; got {retention}.")
    if daily is not None and not _TIME.match(daily):
        raise v.invalid(f"Invalid DailySnapshotTime {daily}: use HH:MM (UTC).")


def _description(value: str | None) -> str | None:
    if value is not None and len(value) > DESCRIPTION_LENGTH:
        raise v.invalid(f"Description can be at most {DESCRIPTION_LENGTH} characters long.")
    return value


def _backing(ctx: RequestContext) -> RequestContext:
    """The request context of the cache's own replication group (state.serverless.backing_region)."""
    return dataclasses.replace(ctx, region=backing_region(ctx.region))


def _create_shards(ctx: RequestContext, name: str, engine: str, version: str) -> None:
    """The replication group that serves the cache: one shard of a primary and a replica in
    another zone (AWS keeps serverless data in several zones), cluster mode on."""
    replication_groups.create_replication_group(_backing(ctx), {
        "ReplicationGroupId": name, "ReplicationGroupDescription": f"shards of serverless cache {name}",
        "Engine": engine, "EngineVersion": version, "CacheNodeType": SHARD_NODE_TYPE, "ClusterMode": "enabled",
        "NumNodeGroups": 1, "ReplicasPerNodeGroup": 1, "AutomaticFailoverEnabled": True, "MultiAZEnabled": True,
    })


def create_serverless_cache(ctx: RequestContext, params: m.CreateServerlessCacheRequest
                            ) -> m.CreateServerlessCacheResponse:
    name = v.resource_id(params["ServerlessCacheName"], "ServerlessCacheName", NAME_LENGTH)
    engine = _engine(params["Engine"])
    major = _major(engine, params.get("MajorEngineVersion"))
    if engine == "memcached":
        raise v.unsupported("Serverless Memcached")
    for unsupported in ("SnapshotArnsToRestore", "Integrations"):
        if params.get(unsupported):
            raise v.unsupported(unsupported)
    if params.get("NetworkType", "ipv4") != "ipv4":
        raise v.invalid("Only NetworkType ipv4 is supported by elasticache-local (loopback addresses).")
    retention, daily = params.get("SnapshotRetentionLimit"), params.get("DailySnapshotTime")
    _snapshot_settings(retention, daily)
    tags = v.tag_records(params.get("Tags", []))
    store = ctx.services.store
    spec = ServerlessSpec(
        engine=engine, major_version=major, description=_description(params.get("Description")) or "",
        limits=_usage_limits(params.get("CacheUsageLimits")), kms_key_id=params.get("KmsKeyId"),
        security_group_ids=list(params.get("SecurityGroupIds", [])), subnet_ids=list(params.get("SubnetIds", [])),
        user_group_id=_user_group(ctx, engine, params.get("UserGroupId")),
        snapshot_retention_limit=retention or 0, daily_snapshot_time=daily)
    if len(store.records(ServerlessCache, ctx.account, ctx.region)) >= MAX_CACHES:
        raise ServerlessCacheQuotaForCustomerExceededFault(
            f"You have reached the limit of {MAX_CACHES} serverless caches in {ctx.region}.")
    rec = ServerlessCache(account=ctx.account, region=ctx.region, id=name, created_at=ctx.services.clock.now(),
                          tags=tags, spec=spec)
    if store.get(rec.key, ServerlessCache) is not None:
        raise ServerlessCacheAlreadyExistsFault(f"Serverless cache {name} already exists.")
    _create_shards(ctx, name, engine, rec.full_version())
    if not store.create(rec):
        raise ServerlessCacheAlreadyExistsFault(f"Serverless cache {name} already exists.")
    ctx.services.events.emit(ctx.account, ctx.region, "serverless-cache", name, f"Serverless cache {name} created")
    ctx.services.enqueue(rec.key)
    return {"ServerlessCache": shape(ctx, rec)}


def describe_serverless_caches(ctx: RequestContext, params: m.DescribeServerlessCachesRequest
                               ) -> m.DescribeServerlessCachesResponse:
    store = ctx.services.store
    name = params.get("ServerlessCacheName")
    caches = [_get(ctx, name)] if name else store.records(ServerlessCache, ctx.account, ctx.region)
    chunk, token = v.page(caches, params.get("MaxResults"), params.get("NextToken"), default=50, low=1,
                          high=100, key=lambda r: store.seq(r.key))
    out: dict[str, Any] = {"ServerlessCaches": [shape(ctx, r) for r in chunk]}
    if token:
        out["NextToken"] = token
    return cast(m.DescribeServerlessCachesResponse, out)


def modify_serverless_cache(ctx: RequestContext, params: m.ModifyServerlessCacheRequest
                            ) -> m.ModifyServerlessCacheResponse:
    rec = _get(ctx, params["ServerlessCacheName"])
    if rec.api_status() != "available":
        raise InvalidServerlessCacheStateFault(
            f"Serverless cache {rec.id} is {rec.api_status()}; it can be modified only when available.")
    spec = rec.spec.model_copy(deep=True)
    engine = _engine(params["Engine"]) if params.get("Engine") else spec.engine
    if engine != spec.engine and (spec.engine, engine) != ("redis", "valkey"):
        raise v.combination(f"A serverless {spec.engine} cache cannot change its engine to {engine} "
                            "(only redis to valkey is allowed).")
    major = _major(engine, params.get("MajorEngineVersion") or (spec.major_version if engine == spec.engine
                                                                 else None))
    if engine == spec.engine and major < spec.major_version:
        raise v.combination(f"MajorEngineVersion cannot go down from {spec.major_version} to {major}.")
    spec.engine, spec.major_version = engine, major
    description = _description(params.get("Description"))
    if description is not None:
        spec.description = description
    spec.limits = _usage_limits(params.get("CacheUsageLimits"), spec.limits)
    if params.get("RemoveUserGroup") and params.get("UserGroupId"):
        raise v.combination("RemoveUserGroup and UserGroupId cannot be given together.")
    if params.get("RemoveUserGroup"):
        spec.user_group_id = None
    elif params.get("UserGroupId"):
        spec.user_group_id = _user_group(ctx, engine, params["UserGroupId"])
    if params.get("SecurityGroupIds"):
        spec.security_group_ids = list(params["SecurityGroupIds"])
    retention, daily = params.get("SnapshotRetentionLimit"), params.get("DailySnapshotTime")
    _snapshot_settings(retention, daily)
    if retention is not None:
        spec.snapshot_retention_limit = retention
    if daily is not None:
        spec.daily_snapshot_time = daily

    def change(r: ServerlessCache) -> None:
        if r.spec != spec:
            r.spec = spec
            r.generation += 1

    updated = ctx.services.store.update(rec.key, ServerlessCache, change) or rec
    ctx.services.enqueue(rec.key)
    return {"ServerlessCache": shape(ctx, updated)}


def delete_serverless_cache(ctx: RequestContext, params: m.DeleteServerlessCacheRequest
                            ) -> m.DeleteServerlessCacheResponse:
    rec = _get(ctx, params["ServerlessCacheName"])
    if rec.api_status() in ("creating", "modifying", "deleting"):
        raise InvalidServerlessCacheStateFault(f"Serverless cache {rec.id} is {rec.api_status()}; it cannot be "
                                               "deleted now.")
    if params.get("FinalSnapshotName"):
        raise v.unsupported("FinalSnapshotName")
    try:
        replication_groups.delete_replication_group(_backing(ctx), {"ReplicationGroupId": rec.id})
    except InvalidReplicationGroupStateFault as exc:  # its shards are changing (a failover)
        raise InvalidServerlessCacheStateFault(f"Serverless cache {rec.id} is busy; retry: {exc}") from exc

    def change(r: ServerlessCache) -> None:
        r.spec.deleting = True
        r.generation += 1

    updated = ctx.services.store.update(rec.key, ServerlessCache, change) or rec
    ctx.services.enqueue(rec.key)
    return {"ServerlessCache": shape(ctx, updated)}


HANDLERS: HandlerTable = {
    "CreateServerlessCache": create_serverless_cache,
    "DescribeServerlessCaches": describe_serverless_caches,
    "ModifyServerlessCache": modify_serverless_cache,
    "DeleteServerlessCache": delete_serverless_cache,
}
