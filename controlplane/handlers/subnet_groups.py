"""CreateCacheSubnetGroup, ModifyCacheSubnetGroup, DeleteCacheSubnetGroup, DescribeCacheSubnetGroups
with AWS's rules, and placement: the zones a cache's nodes go to when it names a subnet group
(spread over the group's zones, as AWS spreads a Multi-AZ group's nodes)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import cast

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import ensure_builtin, get_or_builtin
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state.arns import arn
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.subnet_groups import (
    DEFAULT_SUBNET_GROUP,
    CacheSubnetGroup,
    CacheSubnetGroupSpec,
    builtin_default_group,
    subnet_zone,
    vpc_id,
)

MAX_SUBNET_GROUPS = 50  # AWS's quotas per region
MAX_SUBNETS = 20  # per subnet group
MAX_NAME = 255
MAX_DESCRIPTION = 255
_NAME = re.compile(r"^[A-Za-z0-9-]+$")
_SUBNET = re.compile(r"^subnet-[A-Za-z0-9-]{1,64}$")


def ensure_default_group(ctx: RequestContext) -> None:
    """The built-in `default` subnet group, stored on first use (tags and paging see it as any other)."""
    ensure_builtin(ctx, CacheSubnetGroup, DEFAULT_SUBNET_GROUP, builtin_default_group)


def get_subnet_group(ctx: RequestContext, name: str) -> CacheSubnetGroup:
    return get_or_builtin(ctx, CacheSubnetGroup, name, DEFAULT_SUBNET_GROUP, builtin_default_group,
                          lambda v: e.CacheSubnetGroupNotFoundFault(f"CacheSubnetGroup {v} not found."))


def _name(value: str) -> str:
    if not value or len(value) > MAX_NAME or not _NAME.match(value):
        raise v.invalid(f"Invalid CacheSubnetGroupName: {value[:300]}. It must contain no more than {MAX_NAME} "
                        "alphanumeric characters or hyphens.")
    return value.lower()


def _description(value: str) -> str:
    if not value.strip():
        raise v.invalid("The parameter CacheSubnetGroupDescription must be provided and must not be blank.")
    if len(value) > MAX_DESCRIPTION:
        raise v.invalid(f"CacheSubnetGroupDescription must be at most {MAX_DESCRIPTION} characters.")
    return value


def _subnets(values: Sequence[str]) -> list[str]:
    if not values:
        raise v.invalid("The parameter SubnetIds must be provided and must contain at least one subnet.")
    out: list[str] = []
    for subnet in values:
        if not _SUBNET.match(subnet):
            raise e.InvalidSubnet(f"The subnet ID {subnet[:100]} does not exist")
        if subnet not in out:  # a subnet named twice is one subnet
            out.append(subnet)
    if len(out) > MAX_SUBNETS:
        raise e.CacheSubnetQuotaExceededFault(f"The request cannot be processed because it would exceed the allowed "
                                              f"number of subnets in a cache subnet group ({MAX_SUBNETS}).")
    return out


def subnet_group_shape(rec: CacheSubnetGroup) -> m.CacheSubnetGroup:
    return {
        "CacheSubnetGroupName": rec.id,
        "CacheSubnetGroupDescription": rec.spec.description,
        "VpcId": vpc_id(rec.account, rec.region),
        "Subnets": [{"SubnetIdentifier": s, "SubnetAvailabilityZone": {"Name": subnet_zone(rec.region, s)},
                     "SupportedNetworkTypes": ["ipv4"]} for s in rec.spec.subnet_ids],
        "ARN": arn(rec.region, rec.account, rec.KIND, rec.id),
        "SupportedNetworkTypes": ["ipv4"],
    }


def _users(ctx: RequestContext, name: str) -> list[CacheCluster]:
    return [c for c in ctx.services.store.records(CacheCluster, ctx.account, ctx.region) if c.spec.subnet_group == name]


def create_cache_subnet_group(ctx: RequestContext,
                              params: m.CreateCacheSubnetGroupMessage) -> m.CreateCacheSubnetGroupResult:
    name = _name(params["CacheSubnetGroupName"])
    ensure_default_group(ctx)
    store = ctx.services.store
    if store.get(ctx.key(CacheSubnetGroup.KIND, name), CacheSubnetGroup) is not None:
        raise e.CacheSubnetGroupAlreadyExistsFault(f"Cache subnet group {name} already exists.")
    spec = CacheSubnetGroupSpec(description=_description(params["CacheSubnetGroupDescription"]),
                                subnet_ids=_subnets(params["SubnetIds"]))
    tags = v.tag_records(params.get("Tags", []))
    if len(store.records(CacheSubnetGroup, ctx.account, ctx.region)) >= MAX_SUBNET_GROUPS:
        raise e.CacheSubnetGroupQuotaExceededFault(
            f"The request cannot be processed because it would exceed the allowed number of cache subnet groups "
            f"({MAX_SUBNET_GROUPS}).")
    rec = CacheSubnetGroup(account=ctx.account, region=ctx.region, id=name, created_at=ctx.services.clock.now(),
                           tags=tags, spec=spec)
    if not store.create(rec):
        raise e.CacheSubnetGroupAlreadyExistsFault(f"Cache subnet group {name} already exists.")
    return {"CacheSubnetGroup": subnet_group_shape(rec)}


def modify_cache_subnet_group(ctx: RequestContext,
                              params: m.ModifyCacheSubnetGroupMessage) -> m.ModifyCacheSubnetGroupResult:
    rec = get_subnet_group(ctx, params["CacheSubnetGroupName"])
    if rec.id == DEFAULT_SUBNET_GROUP:
        raise v.invalid("The default cache subnet group cannot be modified.")
    spec = rec.spec.model_copy(deep=True)
    if params.get("CacheSubnetGroupDescription") is not None:
        spec.description = _description(params["CacheSubnetGroupDescription"])
    if "SubnetIds" in params:
        spec.subnet_ids = _subnets(params["SubnetIds"])
        _keep_used_zones(ctx, rec, spec.subnet_ids)

    def change(r: CacheSubnetGroup) -> None:
        r.spec = spec
        r.generation += 1

    updated = ctx.services.store.update(rec.key, CacheSubnetGroup, change)
    if updated is None:
        raise e.CacheSubnetGroupNotFoundFault(f"CacheSubnetGroup {rec.id} not found.")
    return {"CacheSubnetGroup": subnet_group_shape(updated)}


def _keep_used_zones(ctx: RequestContext, rec: CacheSubnetGroup, subnet_ids: list[str]) -> None:
    """A subnet cannot leave the group while nodes of its caches are in its zone and no other
    subnet of the group is (AWS: SubnetInUse)."""
    kept = {subnet_zone(rec.region, s) for s in subnet_ids}
    # Where each cache's nodes are; a cache not placed yet: where they will be.
    used = {az for c in _users(ctx, rec.id) for az in ([n.az for n in c.status.nodes] or c.spec.preferred_azs)}
    for subnet in rec.spec.subnet_ids:
        zone = subnet_zone(rec.region, subnet)
        if subnet not in subnet_ids and zone in used and zone not in kept:
            raise e.SubnetInUse(f"The subnet {subnet} is in use: cache nodes of subnet group {rec.id} are in "
                                f"{zone}.")


def delete_cache_subnet_group(ctx: RequestContext, params: m.DeleteCacheSubnetGroupMessage) -> None:
    rec = get_subnet_group(ctx, params["CacheSubnetGroupName"])
    if rec.id == DEFAULT_SUBNET_GROUP:
        raise v.invalid("Cannot delete default cache subnet group.")
    users = _users(ctx, rec.id)
    if users:
        raise e.CacheSubnetGroupInUse(f"Cache subnet group {rec.id} is currently in use by cache cluster "
                                      f"{users[0].id}.")
    ctx.services.store.delete(rec.key)


def describe_cache_subnet_groups(ctx: RequestContext,
                                 params: m.DescribeCacheSubnetGroupsMessage) -> m.CacheSubnetGroupMessage:
    ensure_default_group(ctx)
    store = ctx.services.store
    name = params.get("CacheSubnetGroupName")
    groups = [get_subnet_group(ctx, name)] if name else store.records(CacheSubnetGroup, ctx.account, ctx.region)
    return cast(m.CacheSubnetGroupMessage, v.listing("CacheSubnetGroups", groups, params, subnet_group_shape, store))


# ---- placement ----------------------------------------------------------------------------------


def group_zones(ctx: RequestContext, name: str | None) -> tuple[str | None, list[str]]:
    """(the subnet group's stored name, its zones) for a cache naming it; (None, []) for none."""
    if not name:
        return None, []
    rec = get_subnet_group(ctx, name)
    return rec.id, rec.zones()


def within(zones: list[str], name: str | None, asked: Sequence[str]) -> None:
    """Zones asked for a cache of a subnet group must be zones of that group."""
    for az in asked:
        if zones and az and az not in zones:
            raise v.invalid(f"The availability zone {az} is not in cache subnet group {name} "
                            f"(its zones: {', '.join(zones)}).")


def spread(zones: list[str], taken: Sequence[str], count: int) -> list[str]:
    """`count` zones for new nodes: each in the group's zone with the fewest nodes so far (ties:
    the region's order), so N nodes over N zones get one zone each."""
    used = Counter(az for az in taken if az in zones)
    out: list[str] = []
    for _ in range(count):
        zone = min(zones, key=lambda z: (used[z], zones.index(z)))
        used[zone] += 1
        out.append(zone)
    return out


def member_zones(ctx: RequestContext, rg: ReplicationGroup, count: int) -> list[str]:
    """Zones for `count` new members of a replication group of a subnet group (none without one)."""
    if not rg.spec.subnet_group or count <= 0:
        return []
    _, zones = group_zones(ctx, rg.spec.subnet_group)
    taken = [(c.status.nodes[0].az if c.status.nodes else c.spec.preferred_azs[0])
             for c in members_of(ctx.services.store, rg) if c.status.nodes or c.spec.preferred_azs]
    return spread(zones, taken, count)


HANDLERS: HandlerTable = {
    "CreateCacheSubnetGroup": create_cache_subnet_group,
    "ModifyCacheSubnetGroup": modify_cache_subnet_group,
    "DeleteCacheSubnetGroup": delete_cache_subnet_group,
    "DescribeCacheSubnetGroups": describe_cache_subnet_groups,
}
