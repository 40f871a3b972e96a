"""StartMigration, TestMigration, CompleteMigration (online migration of a self-managed Redis into
a replication group, state/migration.py), and the serverless-cache migration operations
(PrepareMigration, StopMigration), which name a serverless cache.

The checks here are AWS's prerequisites that the request alone shows (the target's engine
version, Multi-AZ, no in-transit encryption, one source endpoint, not one of this service's own
nodes); those that need the source (reachable, no AUTH, not cluster-enabled) are the
reconciler's, reported as events, as AWS reports them."""

from __future__ import annotations

from collections.abc import Callable

from controlplane.catalog import version_key
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import get_group, group_shape, require_available
from controlplane.model import messages as m
from controlplane.model.errors import (
    ReplicationGroupAlreadyUnderMigrationFault,
    ReplicationGroupNotUnderMigrationFault,
    ServerlessCacheNotFoundFault,
)
from controlplane.protocol.errors import missing_parameter
from controlplane.state.migration import MigrationSource, MigrationSpec, MigrationTest, migrating
from controlplane.state.records import CacheCluster, ReplicationGroup

MINIMUM_VERSION = {"redis": "5.0.6", "valkey": "7.2"}  # AWS: a target from Redis OSS 5.0.6 on
DEFAULT_PORT = 6379


def _serverless(name: str) -> Exception:
    # No serverless cache exists in this service (CreateServerlessCache is not built yet), so a
    # name is one AWS would not find either.
    return ServerlessCacheNotFoundFault(f"Serverless cache {name} not found.")


def _target(ctx: RequestContext, group_id: str | None, serverless: str | None) -> ReplicationGroup:
    if group_id and serverless:
        raise v.combination("Give ReplicationGroupId or ServerlessCacheName, not both.")
    if serverless:
        raise _serverless(serverless)
    if not group_id:
        raise missing_parameter("The request must contain the parameter ReplicationGroupId")
    return get_group(ctx, group_id)


def _source(ctx: RequestContext, endpoints: list[m.CustomerNodeEndpoint] | None) -> MigrationSource:
    if not endpoints:
        raise missing_parameter("The request must contain the parameter CustomerNodeEndpointList")
    if len(endpoints) != 1:
        raise v.invalid("CustomerNodeEndpointList must have exactly one element.")
    address = endpoints[0].get("Address", "").strip()
    port = endpoints[0].get("Port", DEFAULT_PORT)
    if not address:
        raise v.invalid("The customer node endpoint must have an Address.")
    if not 1 <= port <= 65535:
        raise v.invalid(f"Invalid Port {port}: it must be between 1 and 65535.")
    for cluster in ctx.services.store.records(CacheCluster):
        for node in cluster.status.nodes:
            if (node.host, node.port) == (address, port):
                raise v.invalid(f"{address}:{port} is a node of cache cluster {cluster.id}: online migration is "
                                "for self-managed Redis OSS, not between ElastiCache clusters.")
    return MigrationSource(address=address, port=port)


def _check_group(rg: ReplicationGroup) -> None:
    if migrating(rg.spec.migration, rg.status.migration):
        raise ReplicationGroupAlreadyUnderMigrationFault(f"Replication group {rg.id} is already under migration.")
    require_available(rg)
    if rg.cluster_enabled:
        raise v.combination(f"Online migration into a cluster-mode-enabled replication group ({rg.id}) is not "
                            "supported by elasticache-local yet.")
    engine, version = rg.spec.engine, rg.target().engine_version
    needed = MINIMUM_VERSION.get(engine)
    if needed is None or version_key(version) < version_key(needed):
        raise v.combination(f"Online migration needs a target running Redis OSS {MINIMUM_VERSION['redis']} or "
                            f"later (or Valkey); {rg.id} runs {engine} {version}.")
    if rg.spec.security.transit_encryption:
        raise v.combination(f"Online migration is not supported for replication group {rg.id}: it has in-transit "
                            "encryption enabled.")
    if not rg.spec.multi_az:
        raise v.combination(f"Online migration needs Multi-AZ enabled on replication group {rg.id}.")


def start_migration(ctx: RequestContext, params: m.StartMigrationMessage) -> m.StartMigrationResponse:
    rg = _target(ctx, params.get("ReplicationGroupId"), params.get("ServerlessCacheName"))
    if params.get("ClearTargetCacheData"):
        raise v.combination("ClearTargetCacheData applies to a migration into a serverless cache; a replication "
                            "group's primary replaces its data with the source's when it starts replicating.")
    source = _source(ctx, params.get("CustomerNodeEndpointList"))
    _check_group(rg)
    auto = bool(params.get("AutoCutover", False))

    def change(r: ReplicationGroup) -> None:
        seq = max(r.spec.migration.seq if r.spec.migration else 0, r.status.migration.ended) + 1
        r.spec.migration = MigrationSpec(seq=seq, source=source, auto_cutover=auto)

    return {"ReplicationGroup": _changed(ctx, rg, change)}


def test_migration(ctx: RequestContext, params: m.TestMigrationMessage) -> m.TestMigrationResponse:
    rg = get_group(ctx, params["ReplicationGroupId"])
    source = _source(ctx, params["CustomerNodeEndpointList"])
    _check_group(rg)

    def change(r: ReplicationGroup) -> None:
        seq = max(r.spec.migration_test.seq if r.spec.migration_test else 0, r.status.migration.tested) + 1
        r.spec.migration_test = MigrationTest(seq=seq, source=source)

    return {"ReplicationGroup": _changed(ctx, rg, change)}


def complete_migration(ctx: RequestContext, params: m.CompleteMigrationMessage) -> m.CompleteMigrationResponse:
    rg = _target(ctx, params.get("ReplicationGroupId"), params.get("ServerlessCacheName"))
    if not migrating(rg.spec.migration, rg.status.migration):
        raise ReplicationGroupNotUnderMigrationFault(f"Replication group {rg.id} is not under migration.")
    force = bool(params.get("Force", False))

    def change(r: ReplicationGroup) -> None:
        assert r.spec.migration is not None  # checked above; a migration only ends in the reconciler
        r.spec.migration.complete_calls += 1
        r.spec.migration.force = force

    return {"ReplicationGroup": _changed(ctx, rg, change)}


def prepare_migration(ctx: RequestContext, params: m.PrepareMigrationRequest) -> m.PrepareMigrationResponse:
    raise _serverless(params["ServerlessCacheName"])


def stop_migration(ctx: RequestContext, params: m.StopMigrationRequest) -> m.StopMigrationResponse:
    raise _serverless(params["ServerlessCacheName"])


def _changed(ctx: RequestContext, rg: ReplicationGroup,
             change: Callable[[ReplicationGroup], None]) -> m.ReplicationGroup:
    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    ctx.services.enqueue(rg.key)
    return group_shape(ctx, updated)


HANDLERS: HandlerTable = {
    "StartMigration": start_migration,
    "TestMigration": test_migration,
    "CompleteMigration": complete_migration,
    "PrepareMigration": prepare_migration,
    "StopMigration": stop_migration,
}
