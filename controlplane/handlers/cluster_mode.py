"""CreateReplicationGroup with cluster mode enabled: shards (node groups `0001`, ...) of a Redis
Cluster, each a primary and 0-5 replicas, their hash slots as asked (NodeGroupConfiguration
Slots) or split evenly. Validation follows AWS's rules and limits; the members are cache clusters
`<group>-<shard>-001`, ... (the reconciler builds the real cluster)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from controlplane.handlers import cluster_security, parameter_groups, subnet_groups
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.handlers.members import MAX_REPLICAS, member_spec
from controlplane.model import messages as m
from controlplane.model.errors import (
    CacheClusterAlreadyExistsFault,
    NodeGroupsPerReplicationGroupQuotaExceededFault,
    NodeQuotaForClusterExceededFault,
)
from controlplane.state.parameter_groups import CacheParameterGroup
from controlplane.state.records import CacheCluster, NodeGroupSpec, ReplicationGroup, ReplicationGroupSpec
from engine import SLOTS, even_ranges, merge_ranges

MAX_NODE_GROUPS = 500  # AWS's limit of shards per cluster
MAX_NODES = 90  # AWS's default quota of nodes per cluster (raised on request there)
MODES = ("enabled", "disabled", "compatible")
_NODE_GROUP_ID = re.compile(r"^[0-9A-Za-z]{1,4}$")
_SLOT_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
# The keys of a request only cluster mode reads: the common spec is built without them.
_CLUSTER_KEYS = ("NumNodeGroups", "NodeGroupConfiguration", "ReplicasPerNodeGroup", "AutomaticFailoverEnabled",
                 "MultiAZEnabled", "CacheParameterGroupName", "ClusterMode", "PreferredCacheClusterAZs")


@dataclass(frozen=True)
class Layout:
    mode: str
    node_groups: list[NodeGroupSpec]
    automatic_failover: bool
    multi_az: bool
    parameter_group: str | None


def layout(ctx: RequestContext, params: m.CreateReplicationGroupMessage) -> Layout | None:
    """The shards asked for, validated; None when the request is for cluster mode disabled."""
    mode = (params.get("ClusterMode") or "").lower()
    if mode and mode not in MODES:
        raise v.invalid(f"Invalid ClusterMode: {params.get('ClusterMode')}. Valid values: {', '.join(MODES)}.")
    configs = list(params.get("NodeGroupConfiguration", []))
    count = params.get("NumNodeGroups")
    named = is_cluster_parameter_group(ctx, params.get("CacheParameterGroupName"))
    wanted = (count or 1) > 1 or len(configs) > 1 or mode in ("enabled", "compatible") or named
    if not wanted:
        return None
    if mode == "disabled":
        raise v.combination("ClusterMode disabled cannot have more than one node group or a cluster-enabled "
                            "parameter group.")
    if params.get("NumCacheClusters") is not None:
        raise v.combination("NumCacheClusters cannot be used with cluster mode enabled: use NumNodeGroups and "
                            "ReplicasPerNodeGroup.")
    if params.get("PrimaryClusterId"):
        raise v.unsupported("PrimaryClusterId with cluster mode enabled")
    count = count if count is not None else max(len(configs), 1)
    if not 1 <= count <= MAX_NODE_GROUPS:
        raise NodeGroupsPerReplicationGroupQuotaExceededFault(
            f"NumNodeGroups must be between 1 and {MAX_NODE_GROUPS}.")
    if configs and len(configs) != count:
        raise v.invalid(f"The number of NodeGroupConfiguration entries ({len(configs)}) must equal NumNodeGroups "
                        f"({count}).")
    groups = _node_groups(ctx, params, configs or [{} for _ in range(count)])
    nodes = sum(1 + g.replica_count for g in groups)
    if nodes > MAX_NODES:
        raise NodeQuotaForClusterExceededFault(
            f"The replication group would have {nodes} nodes; at most {MAX_NODES} are allowed per cluster.")
    automatic = params.get("AutomaticFailoverEnabled")
    if automatic is False and count > 1:
        raise v.combination("Automatic failover must be enabled for a replication group with cluster mode enabled "
                            "and more than one node group.")
    multi_az = bool(params.get("MultiAZEnabled"))
    if multi_az and automatic is False:
        raise v.combination("Multi-AZ requires automatic failover to be enabled.")
    if multi_az and any(g.replica_count < 1 for g in groups):
        raise v.combination("Multi-AZ requires at least one replica in every node group.")
    return Layout(mode=mode or "enabled", node_groups=groups, automatic_failover=automatic is not False,
                  multi_az=multi_az, parameter_group=params.get("CacheParameterGroupName"))


def common_params(params: m.CreateReplicationGroupMessage) -> m.CreateReplicationGroupMessage:
    """The request without what only cluster mode reads: the settings every group has."""
    common = dict(params)
    for key in _CLUSTER_KEYS:
        common.pop(key, None)
    return common  # type: ignore[return-value]  # a subset of the same TypedDict


def apply(ctx: RequestContext, spec: ReplicationGroupSpec, shape: Layout) -> ReplicationGroupSpec:
    spec.cluster_mode = shape.mode
    spec.node_groups = shape.node_groups
    spec.automatic_failover = shape.automatic_failover
    spec.multi_az = shape.multi_az
    spec.parameter_group = cluster_parameter_group(ctx, spec.engine, spec.engine_version, shape.parameter_group)
    cluster_security.refuse_iam(ctx, spec.security.user_group_ids)
    return spec


# ---- parameter groups: the seam to the parameter-group family --------------------------------


def is_cluster_parameter_group(ctx: RequestContext, name: str | None) -> bool:
    """Whether a parameter group turns cluster mode on: a default `*.cluster.on` group, or a
    stored group whose `cluster-enabled` is yes (a name that is neither is checked later, by the
    parameter groups' own rules)."""
    if not name:
        return False
    if name.lower().endswith(".cluster.on"):
        return True
    found = ctx.services.store.get(ctx.key(CacheParameterGroup.KIND, name.lower()), CacheParameterGroup)
    return found is not None and found.value("cluster-enabled") == "yes"


def cluster_parameter_group(ctx: RequestContext, engine: str, version: str, requested: str | None) -> str:
    """The parameter group of a cluster-mode group: the one named (of the version's family, with
    cluster-enabled yes), else the family's `default.<family>.cluster.on`."""
    return parameter_groups.group_for_cache(ctx, engine, version, requested, cluster_mode=True)


# ---- shards -------------------------------------------------------------------------------


def _node_groups(ctx: RequestContext, params: m.CreateReplicationGroupMessage,
                 configs: list[m.NodeGroupConfiguration]) -> list[NodeGroupSpec]:
    default_replicas = params.get("ReplicasPerNodeGroup")
    asked_slots = [c.get("Slots") for c in configs]
    if any(asked_slots) and not all(asked_slots):
        raise v.invalid("Slots must be given for every node group or for none.")
    slots = [_parse_slots(s or "") for s in asked_slots] if all(asked_slots) else [[r] for r in even_ranges(
        len(configs))]
    _check_coverage(slots)
    out: list[NodeGroupSpec] = []
    for index, config in enumerate(configs):
        group_id = config.get("NodeGroupId") or f"{index + 1:04d}"
        if not _NODE_GROUP_ID.match(group_id):
            raise v.invalid(f"Invalid NodeGroupId {group_id}: 1 to 4 letters or digits.")
        if any(g.id == group_id for g in out):
            raise v.invalid(f"NodeGroupId {group_id} is given more than once.")
        replicas = config.get("ReplicaCount", default_replicas if default_replicas is not None else 1)
        if not 0 <= replicas <= MAX_REPLICAS:
            raise v.invalid(f"ReplicasPerNodeGroup / ReplicaCount must be between 0 and {MAX_REPLICAS}.")
        replica_azs = list(config.get("ReplicaAvailabilityZones", []))
        if replica_azs and len(replica_azs) != replicas:
            raise v.combination(f"Node group {group_id}: the number of ReplicaAvailabilityZones ({len(replica_azs)}) "
                                f"must equal its replica count ({replicas}).")
        primary_az = config.get("PrimaryAvailabilityZone")
        v.availability_zones(ctx.region, [a for a in [primary_az, *replica_azs] if a])
        out.append(NodeGroupSpec(id=group_id, slots=slots[index], replica_count=replicas, primary_az=primary_az,
                                 replica_azs=replica_azs))
    return out


def _parse_slots(text: str) -> list[tuple[int, int]]:
    ranges = []
    for part in text.split(","):
        match = _SLOT_RANGE.match(part.strip())
        if not match:
            raise v.invalid(f"Invalid Slots {text!r}: expected ranges like 0-5460,5461-10922.")
        first, last = int(match.group(1)), int(match.group(2) or match.group(1))
        if not 0 <= first <= last < SLOTS:
            raise v.invalid(f"Invalid slot range {part.strip()}: slots are 0-{SLOTS - 1}, the first not above the "
                            "last.")
        ranges.append((first, last))
    return list(merge_ranges(ranges))


def _check_coverage(slots: list[list[tuple[int, int]]]) -> None:
    everything = sorted(r for group in slots for r in group)
    for (_, last), (first, _) in itertools.pairwise(everything):
        if first <= last:
            raise v.invalid(f"Slot {first} is assigned to more than one node group.")
    if merge_ranges(everything) != ((0, SLOTS - 1),):
        raise v.invalid(f"The node groups' Slots must cover 0-{SLOTS - 1}, each slot exactly once.")


def add_shard_members(ctx: RequestContext, rg: ReplicationGroup) -> None:
    """Members `<group>-<shard>-001` (the shard's first primary), `-002`, ... with their zones."""
    store = ctx.services.store
    _, zones = subnet_groups.group_zones(ctx, rg.spec.subnet_group)
    for group in rg.spec.node_groups:
        count = 1 + group.replica_count
        azs = [group.primary_az or "", *group.replica_azs] if group.primary_az or group.replica_azs else []
        subnet_groups.within(zones, rg.spec.subnet_group, [a for a in azs if a])
        if zones and not any(azs):
            azs = subnet_groups.spread(zones, [], count)
        for number in range(1, count + 1):
            member_id = f"{rg.id}-{group.id.lower()}-{number:03d}"
            az = azs[number - 1] if number - 1 < len(azs) else None
            spec = member_spec(rg, az or None)
            spec.node_group_id = group.id
            record = CacheCluster(account=ctx.account, region=ctx.region, id=member_id,
                                  created_at=ctx.services.clock.now(), tags=list(rg.tags), spec=spec)
            if not store.create(record):
                raise CacheClusterAlreadyExistsFault(f"Cache cluster {member_id} already exists.")
