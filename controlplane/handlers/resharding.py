"""ModifyReplicationGroupShardConfiguration: online resharding of a cluster-mode group. Shards
are added (`NodeGroupCount` above the current count; `ReshardingConfiguration` places them),
removed (below it; `NodeGroupsToRemove` or `NodeGroupsToRetain` names them) or the slots
rebalanced (the same count). The handler writes the shards the group will have, each with the
slots it will serve (balanced evenly, moving as few as possible), and the new shards' members;
the reconciler (reconciler/replication_groups/resharding.py) starts them, moves the slots with
their keys and retires the removed shards."""

from __future__ import annotations

from controlplane.handlers import validate as v
from controlplane.handlers.cluster_mode import MAX_NODE_GROUPS, MAX_NODES, NODE_GROUP_ID, add_shard_members
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import (
    available_members,
    bump_generation,
    get_group,
    group_shape,
    require_available,
)
from controlplane.model import messages as m
from controlplane.model.errors import (
    NodeGroupsPerReplicationGroupQuotaExceededFault,
    NodeQuotaForCustomerExceededFault,
)
from controlplane.state.records import NodeGroupSpec, ReplicationGroup
from engine import SLOTS, merge_ranges


def modify_shard_configuration(ctx: RequestContext, params: m.ModifyReplicationGroupShardConfigurationMessage,
                               ) -> m.ModifyReplicationGroupShardConfigurationResult:
    rg = get_group(ctx, params["ReplicationGroupId"])
    if not rg.cluster_enabled:
        raise v.invalid(f"Replication group {rg.id} does not have cluster mode enabled: its shards cannot be "
                        "reconfigured.")
    if not params.get("ApplyImmediately"):
        raise v.invalid("ApplyImmediately must be true: the shard configuration changes only immediately.")
    require_available(rg)
    available_members(ctx, rg)
    count = params["NodeGroupCount"]
    if not 1 <= count <= MAX_NODE_GROUPS:
        raise NodeGroupsPerReplicationGroupQuotaExceededFault(
            f"NodeGroupCount must be between 1 and {MAX_NODE_GROUPS}.")
    current = [g.id for g in rg.spec.node_groups]
    if count < len(current):
        kept = _retained(params, current, count)
        added: list[NodeGroupSpec] = []
    else:
        if params.get("NodeGroupsToRemove") or params.get("NodeGroupsToRetain"):
            raise v.combination("NodeGroupsToRemove and NodeGroupsToRetain are only for a NodeGroupCount less than "
                                f"the current number of node groups ({len(current)}).")
        kept, added = current, _added(ctx, rg, params, count - len(current))
    groups = [g.model_copy(deep=True) for g in rg.spec.node_groups if g.id in kept] + added
    nodes = sum(1 + g.replica_count for g in groups)
    if nodes > MAX_NODES:
        raise NodeQuotaForCustomerExceededFault(
            f"The replication group would have {nodes} nodes; at most {MAX_NODES} are allowed per cluster.")
    layout = balanced({g.id: g.slots for g in rg.spec.node_groups}, [g.id for g in groups])
    for g in groups:
        g.slots = layout[g.id]
    if [(g.id, g.slots) for g in groups] == [(g.id, g.slots) for g in rg.spec.node_groups]:
        raise v.invalid(f"Replication group {rg.id} already has {count} node groups with balanced slots.")

    def change(r: ReplicationGroup) -> None:
        r.spec.node_groups = groups
        bump_generation(r)

    updated = ctx.services.store.update(rg.key, ReplicationGroup, change)
    assert updated is not None
    if added:
        shell = updated.model_copy(deep=True)
        shell.spec.node_groups = added  # add_shard_members creates the members of the shards it is given
        add_shard_members(ctx, shell)
    ctx.services.enqueue(rg.key)
    return {"ReplicationGroup": group_shape(ctx, updated)}


def _retained(params: m.ModifyReplicationGroupShardConfigurationMessage, current: list[str], count: int) -> list[str]:
    """The shards kept when the count goes down (AWS: NodeGroupsToRemove or NodeGroupsToRetain)."""
    remove, retain = params.get("NodeGroupsToRemove"), params.get("NodeGroupsToRetain")
    if params.get("ReshardingConfiguration"):
        raise v.combination("ReshardingConfiguration is only for a NodeGroupCount greater than the current number "
                            f"of node groups ({len(current)}).")
    if remove and retain:
        raise v.combination("Specify either NodeGroupsToRemove or NodeGroupsToRetain, not both.")
    if not remove and not retain:
        raise v.combination(f"NodeGroupCount ({count}) is less than the current number of node groups "
                            f"({len(current)}): NodeGroupsToRemove or NodeGroupsToRetain is required.")
    named = list(remove or retain or [])
    unknown = [g for g in named if g not in current]
    if unknown:
        raise v.invalid(f"Node group(s) {', '.join(unknown)} not found in the replication group.")
    if len(set(named)) != len(named):
        raise v.invalid("A node group is named more than once.")
    if remove and len(remove) != len(current) - count:
        raise v.invalid(f"NodeGroupsToRemove must name {len(current) - count} node group(s) to go from "
                        f"{len(current)} to {count}.")
    if retain and len(retain) != count:
        raise v.invalid(f"NodeGroupsToRetain must name {count} node group(s).")
    return [g for g in current if g not in remove] if remove else [g for g in current if g in named]


def _added(ctx: RequestContext, rg: ReplicationGroup, params: m.ModifyReplicationGroupShardConfigurationMessage,
           new: int) -> list[NodeGroupSpec]:
    """The new shards: their ids (named in ReshardingConfiguration, else the next free numbers),
    their zones (PreferredAvailabilityZones: the primary's, then the replicas'), as many replicas
    as the group's first shard."""
    configs = list(params.get("ReshardingConfiguration", []))
    current = [g.id for g in rg.spec.node_groups]
    if configs and len(configs) != len(current) + new:
        raise v.invalid(f"ReshardingConfiguration must have one entry per node group of the result "
                        f"({len(current) + new}).")
    replicas = rg.spec.node_groups[0].replica_count if rg.spec.node_groups else 0
    named = [c for c in configs if c.get("NodeGroupId") and c["NodeGroupId"] not in current]
    unnamed = [c for c in configs if not c.get("NodeGroupId")]
    if len(named) + len(unnamed) < (new if configs else 0):
        raise v.invalid(f"ReshardingConfiguration must describe the {new} new node group(s).")
    taken, out = set(current), []
    number = 1
    for index in range(new):
        config = (named + unnamed)[index] if configs else {}
        group_id = config.get("NodeGroupId")
        if group_id is None:
            while f"{number:04d}" in taken:
                number += 1
            group_id = f"{number:04d}"
        if not NODE_GROUP_ID.match(group_id) or group_id in taken:
            raise v.invalid(f"Invalid NodeGroupId {group_id}: 1 to 4 letters or digits, not used by another node "
                            "group.")
        taken.add(group_id)
        azs = list(config.get("PreferredAvailabilityZones", []))
        if azs and len(azs) != 1 + replicas:
            raise v.invalid(f"Node group {group_id}: PreferredAvailabilityZones must name {1 + replicas} zone(s): "
                            "the primary's, then each replica's.")
        v.availability_zones(ctx.region, azs)
        out.append(NodeGroupSpec(id=group_id, slots=[], replica_count=replicas, primary_az=azs[0] if azs else None,
                                 replica_azs=azs[1:]))
    return out


def balanced(current: dict[str, list[tuple[int, int]]], final: list[str]) -> dict[str, list[tuple[int, int]]]:
    """The slots of the shards `final`, spread as evenly as 16384 allows, moving as few as
    possible: a shard keeps its lowest slots up to its share; the removed shards' slots and
    every shard's surplus go, lowest first, to the shards short of theirs (in `final`'s order).
    The odd slots over an even split stay with the shards that hold the most now."""
    held = {g: [s for a, b in ranges for s in range(a, b + 1)] for g, ranges in current.items()}
    base, extra = divmod(SLOTS, len(final))
    order = sorted(final, key=lambda g: -len(held.get(g, [])))
    share = {g: base + (1 if i < extra else 0) for i, g in enumerate(order)}
    pool: list[int] = []
    kept: dict[str, list[int]] = {}
    for g, slots in held.items():
        keep = share.get(g, 0)
        kept[g], surplus = slots[:keep], slots[keep:]
        pool.extend(surplus)
    pool.sort()
    out = {}
    for g in final:
        mine = kept.get(g, [])
        need = share[g] - len(mine)
        mine, pool = mine + pool[:need], pool[need:]
        out[g] = list(merge_ranges((s, s) for s in mine))
    return out


HANDLERS: HandlerTable = {
    "ModifyReplicationGroupShardConfiguration": modify_shard_configuration,
}
