"""Global datastores (state/global_datastores.py): Create, Describe, Modify, Delete,
Disassociate, Failover; a secondary group joins with CreateReplicationGroup GlobalReplicationGroupId
(`secondary_settings`, `joined`). Cluster-mode operations (Increase/DecreaseNodeGroups,
RebalanceSlots) need a cluster-mode global datastore, which cannot exist yet: refused as AWS
refuses them on a cluster-mode-disabled one."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, cast

from controlplane.catalog import version_key
from controlplane.handlers import defaults as d
from controlplane.handlers import parameter_groups
from controlplane.handlers import validate as v
from controlplane.handlers.changes import NodeChanges, spec_to_change
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import get_group, require_available
from controlplane.handlers.members import sync_members
from controlplane.model import messages as m
from controlplane.model.errors import (
    GlobalReplicationGroupAlreadyExistsFault,
    GlobalReplicationGroupNotFoundFault,
    InvalidGlobalReplicationGroupStateFault,
    InvalidReplicationGroupStateFault,
)
from controlplane.state.arns import arn
from controlplane.state.global_datastores import (
    GLOBAL_REGION,
    MAX_SECONDARIES,
    GlobalFailover,
    GlobalMember,
    GlobalReplicationGroup,
    GlobalSpec,
    find,
    prefix,
)
from controlplane.state.members import members_of
from controlplane.state.records import ReplicationGroup, ReplicationGroupSpec
from controlplane.state.security import SecuritySpec

MINIMUM_VERSION = {"redis": "5.0.6", "valkey": "7.2"}
# AWS: M5, M6g, M7g, R5, R6g, R6gd, R7g, C7gn, of size large and above.
NODE_TYPE = re.compile(r"^cache\.(m5|m6g|m7g|r5|r6g|r6gd|r7g|c7gn)\.(large|\d*xlarge)$")


def _get(ctx: RequestContext, global_id: str) -> GlobalReplicationGroup:
    g = find(ctx.services.store, ctx.account, global_id.lower())
    if g is None:
        raise GlobalReplicationGroupNotFoundFault(f"Global replication group {global_id} not found.")
    return g


def _group_in(ctx: RequestContext, member: GlobalMember) -> ReplicationGroup | None:
    return ctx.services.store.get(member.key(ctx.account), ReplicationGroup)


def shape(ctx: RequestContext, g: GlobalReplicationGroup, members: bool = True) -> m.GlobalReplicationGroup:
    primary = _group_in(ctx, g.current_primary())
    out: m.GlobalReplicationGroup = {
        "GlobalReplicationGroupId": g.id,
        "GlobalReplicationGroupDescription": g.spec.description,
        "Status": g.api_status(),
        "ClusterEnabled": False,
        "AtRestEncryptionEnabled": False,
        "ARN": arn(GLOBAL_REGION, g.account, g.KIND, g.id),
    }
    if primary is not None:
        out.update({"CacheNodeType": primary.target().node_type, "Engine": primary.spec.engine,
                    "EngineVersion": primary.target().engine_version,
                    "AuthTokenEnabled": primary.spec.security.auth_enabled(),
                    "TransitEncryptionEnabled": primary.spec.security.transit_encryption})
    if members:
        out["Members"] = [_member(ctx, g, member) for member in g.members()]
    return out


def _member(ctx: RequestContext, g: GlobalReplicationGroup, member: GlobalMember) -> m.GlobalReplicationGroupMember:
    rg = _group_in(ctx, member)
    role = "PRIMARY" if member == g.current_primary() else "SECONDARY"
    out: m.GlobalReplicationGroupMember = {"ReplicationGroupId": member.replication_group_id,
                                           "ReplicationGroupRegion": member.region, "Role": role,
                                           "Status": g.member_status(member)}
    if rg is not None:
        out["AutomaticFailover"] = "enabled" if rg.spec.automatic_failover else "disabled"
    return out


def _eligible(rg: ReplicationGroup) -> None:
    """AWS's prerequisites for a group of a global datastore."""
    if rg.cluster_enabled:
        raise v.combination(f"Global datastores of cluster-mode-enabled replication groups ({rg.id}) are not "
                            "supported by elasticache-local yet.")
    needed = MINIMUM_VERSION.get(rg.spec.engine, "99")
    if version_key(rg.target().engine_version) < version_key(needed):
        raise v.invalid(f"Global datastores need Redis OSS {MINIMUM_VERSION['redis']} or later (or Valkey "
                        f"{MINIMUM_VERSION['valkey']}); replication group {rg.id} runs {rg.spec.engine} "
                        f"{rg.target().engine_version}.")
    if not NODE_TYPE.match(rg.target().node_type):
        raise v.invalid(f"Global datastores are supported on M5, M6g, M7g, R5, R6g, R6gd, R7g and C7gn node types of "
                        f"size large and above; replication group {rg.id} uses {rg.target().node_type}.")
    if rg.spec.security.user_group_ids:
        raise v.combination(f"Replication group {rg.id} uses RBAC user groups, which belong to one region: global "
                            "datastores of such groups are not supported by elasticache-local yet.")


def create_global_replication_group(ctx: RequestContext, params: m.CreateGlobalReplicationGroupMessage
                                    ) -> m.CreateGlobalReplicationGroupResult:
    suffix = v.resource_id(params["GlobalReplicationGroupIdSuffix"], "GlobalReplicationGroupIdSuffix", 34)
    rg = get_group(ctx, params["PrimaryReplicationGroupId"])
    require_available(rg)
    if rg.spec.global_group is not None:
        raise InvalidReplicationGroupStateFault(f"Replication group {rg.id} is already a member of global replication "
                                                f"group {rg.spec.global_group}.")
    _eligible(rg)
    global_id = f"{prefix(ctx.region)}-{suffix}"
    store = ctx.services.store
    g = GlobalReplicationGroup(account=ctx.account, region=GLOBAL_REGION, id=global_id,
                               created_at=ctx.services.clock.now(), tags=v.tag_records(params.get("Tags", [])),
                               spec=GlobalSpec(description=params.get("GlobalReplicationGroupDescription", ""),
                                               primary=GlobalMember(replication_group_id=rg.id, region=rg.region)))
    if not store.create(g):
        raise GlobalReplicationGroupAlreadyExistsFault(f"Global replication group {global_id} already exists.")
    _set_membership(ctx, rg, global_id)
    ctx.services.enqueue(g.key)
    return {"GlobalReplicationGroup": shape(ctx, g)}


def describe_global_replication_groups(ctx: RequestContext, params: m.DescribeGlobalReplicationGroupsMessage
                                       ) -> m.DescribeGlobalReplicationGroupsResult:
    store = ctx.services.store
    wanted = params.get("GlobalReplicationGroupId")
    groups = [_get(ctx, wanted)] if wanted else store.records(GlobalReplicationGroup, ctx.account, GLOBAL_REGION)
    show = bool(params.get("ShowMemberInfo"))
    return cast(m.DescribeGlobalReplicationGroupsResult,
                v.listing("GlobalReplicationGroups", groups, params, lambda g: shape(ctx, g, show), store))


def modify_global_replication_group(ctx: RequestContext, params: m.ModifyGlobalReplicationGroupMessage
                                    ) -> m.ModifyGlobalReplicationGroupResult:
    g = _get(ctx, params["GlobalReplicationGroupId"])
    if not params["ApplyImmediately"]:
        raise v.invalid("Modifications to global replication groups cannot be applied in the maintenance window: "
                        "ApplyImmediately must be true.")
    _require_stable(g)
    engine = params.get("Engine")
    primary = _group_in(ctx, g.current_primary())
    if engine and primary is not None and engine.lower() != primary.spec.engine:
        raise v.unsupported("Changing the engine of a global replication group")
    _node_changes(ctx, g, params.get("CacheNodeType"), params.get("EngineVersion"),
                  params.get("CacheParameterGroupName"))
    if "AutomaticFailoverEnabled" in params:
        wanted = bool(params["AutomaticFailoverEnabled"])
        groups = [rg for rg in (_group_in(ctx, member) for member in g.members()) if rg is not None]
        for rg in groups:  # every member must take it before any changes
            if not wanted and rg.spec.multi_az:
                raise v.combination(f"Replication group {rg.id} has Multi-AZ enabled, which requires automatic "
                                    "failover.")
            if wanted and len(members_of(ctx.services.store, rg)) < 2:
                raise v.combination(f"Replication group {rg.id} has no replica: automatic failover needs one.")
        for rg in groups:
            _set_failover(ctx, rg, wanted)
    description = params.get("GlobalReplicationGroupDescription")
    if description is not None:
        g = _update(ctx, g, lambda r: setattr(r.spec, "description", description))
    return {"GlobalReplicationGroup": shape(ctx, g)}


def _node_changes(ctx: RequestContext, g: GlobalReplicationGroup, node_type: str | None,
                  version: str | None, parameter_group: str | None) -> None:
    """A node type, engine version or parameter group for every member group, at once: each group
    rolls its nodes as for ModifyReplicationGroup; an engine upgrade reaches the primary group's
    nodes only after every secondary's (state.global_datastores.upgrade_held)."""
    if not node_type and not version and not parameter_group:
        return
    groups = [rg for rg in (_group_in(ctx, member) for member in g.members()) if rg is not None]
    for rg in groups:
        require_available(rg)
    if node_type and not NODE_TYPE.match(v.node_type(node_type)):
        raise v.invalid(f"Global datastores are supported on M5, M6g, M7g, R5, R6g, R6gd, R7g and C7gn node types of "
                        f"size large and above, not {node_type}.")
    store = ctx.services.store
    for rg in groups:
        spec = spec_to_change(rg)
        spec.parameter_group = parameter_groups.group_on_modify(
            ctx, spec.engine, spec.parameter_group, rg.target().engine_version, version or rg.target().engine_version,
            parameter_group) or spec.parameter_group
        nodes = NodeChanges.start(spec, True)
        if node_type and node_type != spec.node_type:
            nodes.node_type(node_type)
        release = d.version_change(ctx, spec.engine, spec.engine_version, version)
        if release is not None:
            nodes.engine_version(release)
        nodes.finish()

        def change(r: ReplicationGroup, spec: ReplicationGroupSpec = spec, restart: bool = nodes.restart) -> None:
            r.spec = spec
            if restart:
                r.generation += 1

        updated = store.update(rg.key, ReplicationGroup, change)
        if updated is not None:
            sync_members(store, updated)
            ctx.services.enqueue(rg.key)


def delete_global_replication_group(ctx: RequestContext, params: m.DeleteGlobalReplicationGroupMessage
                                    ) -> m.DeleteGlobalReplicationGroupResult:
    g = _get(ctx, params["GlobalReplicationGroupId"])
    if not params["RetainPrimaryReplicationGroup"]:
        raise v.invalid("RetainPrimaryReplicationGroup must be true: the primary replication group is never deleted "
                        "with its global replication group.")
    if g.spec.secondaries or g.failing_over():
        raise InvalidGlobalReplicationGroupStateFault(
            f"Global replication group {g.id} still has secondary members: disassociate them first.")
    answer = shape(ctx, g)
    answer["Status"] = "deleting"
    primary = _group_in(ctx, g.current_primary())
    if primary is not None:
        _set_membership(ctx, primary, None)
    ctx.services.store.delete(g.key)
    return {"GlobalReplicationGroup": answer}


def disassociate_global_replication_group(ctx: RequestContext, params: m.DisassociateGlobalReplicationGroupMessage
                                          ) -> m.DisassociateGlobalReplicationGroupResult:
    g, member = _secondary(ctx, params["GlobalReplicationGroupId"], params["ReplicationGroupId"],
                           params["ReplicationGroupRegion"], lambda gid: v.combination(
                               f"Replication group {params['ReplicationGroupId']} is the primary of global replication "
                               f"group {gid}: only a secondary can be disassociated."))

    def change(r: GlobalReplicationGroup) -> None:
        everyone = [m_ for m_ in r.members() if m_ != member]
        r.spec.primary = r.current_primary()
        r.spec.secondaries = [m_ for m_ in everyone if m_ != r.spec.primary]
        r.status.associated = [a for a in r.status.associated if a != f"{member.region}/{member.replication_group_id}"]

    g = _update(ctx, g, change)
    rg = _group_in(ctx, member)
    if rg is not None:
        _set_membership(ctx, rg, None)  # its primary stops replicating from the primary region: standalone
    return {"GlobalReplicationGroup": shape(ctx, g)}


def failover_global_replication_group(ctx: RequestContext, params: m.FailoverGlobalReplicationGroupMessage
                                      ) -> m.FailoverGlobalReplicationGroupResult:
    g, member = _secondary(ctx, params["GlobalReplicationGroupId"], params["PrimaryReplicationGroupId"],
                           params["PrimaryRegion"], lambda gid: v.invalid(
                               f"Replication group {params['PrimaryReplicationGroupId']} in {params['PrimaryRegion']} "
                               f"is already the primary of global replication group {gid}."))
    rg = _group_in(ctx, member)
    if rg is None or rg.api_status() != "available":
        raise InvalidGlobalReplicationGroupStateFault(
            f"Replication group {member.replication_group_id} in {member.region} is not available.")

    def change(r: GlobalReplicationGroup) -> None:
        seq = max(r.spec.failover.seq if r.spec.failover else 0, r.status.failover_done) + 1
        r.spec.failover = GlobalFailover(seq=seq, to=member)

    g = _update(ctx, g, change)
    for each in g.members():
        ctx.services.enqueue(each.key(ctx.account))
    return {"GlobalReplicationGroup": shape(ctx, g)}


def _cluster_mode_only(ctx: RequestContext, global_id: str) -> NoReturn:
    g = _get(ctx, global_id)
    raise v.invalid(f"Global replication group {g.id} has cluster mode disabled: node groups can be added, removed "
                    "or rebalanced only in a cluster-mode-enabled global replication group.")


def increase_node_groups(ctx: RequestContext, params: m.IncreaseNodeGroupsInGlobalReplicationGroupMessage
                         ) -> m.IncreaseNodeGroupsInGlobalReplicationGroupResult:
    _cluster_mode_only(ctx, params["GlobalReplicationGroupId"])


def decrease_node_groups(ctx: RequestContext, params: m.DecreaseNodeGroupsInGlobalReplicationGroupMessage
                         ) -> m.DecreaseNodeGroupsInGlobalReplicationGroupResult:
    _cluster_mode_only(ctx, params["GlobalReplicationGroupId"])


def rebalance_slots(ctx: RequestContext, params: m.RebalanceSlotsInGlobalReplicationGroupMessage
                    ) -> m.RebalanceSlotsInGlobalReplicationGroupResult:
    _cluster_mode_only(ctx, params["GlobalReplicationGroupId"])


# ---- a secondary joins: CreateReplicationGroup GlobalReplicationGroupId ---------------------------------


@dataclass(frozen=True)
class Inherited:
    """What a secondary group takes from its global datastore's primary group (AWS: inherited)."""

    engine: str
    version: str
    node_type: str
    security: SecuritySpec  # TLS, its mode and the AUTH token: the secondary replicates over the same


def secondary_settings(ctx: RequestContext, global_id: str, params: m.CreateReplicationGroupMessage) -> Inherited:
    """What a new secondary group takes from the global datastore's primary, after AWS's checks
    of the join."""
    g = _get(ctx, global_id)
    _require_stable(g)
    if any(member.region == ctx.region for member in g.members()):
        raise v.invalid(f"Global replication group {g.id} already has a member in {ctx.region}: each member is in "
                        "its own region.")
    if len(g.spec.secondaries) >= MAX_SECONDARIES:
        raise v.invalid(f"Global replication group {g.id} already has {MAX_SECONDARIES} secondary members.")
    primary = _group_in(ctx, g.current_primary())
    if primary is None:
        raise InvalidGlobalReplicationGroupStateFault(f"The primary of global replication group {g.id} is gone.")
    for name in ("PrimaryClusterId", "SnapshotName", "SnapshotArns", "AuthToken", "UserGroupIds"):
        if params.get(name):
            raise v.combination(f"{name} cannot be given for a secondary of a global replication group: it takes its "
                                "data and settings from the primary.")
    inherited = {"Engine": primary.spec.engine, "EngineVersion": primary.target().engine_version,
                 "CacheNodeType": primary.target().node_type}
    for name, value in inherited.items():
        given = params.get(name)
        if given and str(given).lower() != value.lower() and not value.startswith(f"{given}."):
            raise v.invalid(f"{name} {given} differs from the global replication group's {value}: a secondary uses "
                            "the primary's.")
    tls = primary.spec.security.transit_encryption
    if params.get("TransitEncryptionEnabled") is not None and bool(params.get("TransitEncryptionEnabled")) != tls:
        raise v.combination(f"TransitEncryptionEnabled must match the global replication group's ({str(tls).lower()}).")
    return Inherited(inherited["Engine"], inherited["EngineVersion"], inherited["CacheNodeType"],
                     primary.spec.security.model_copy(deep=True))


def joined(ctx: RequestContext, global_id: str, rg: ReplicationGroup) -> None:
    """Record a new secondary group as a member (it replicates from the primary region from its
    first start: members.py reads state.global_datastores.primary_upstream)."""
    g = _get(ctx, global_id)
    member = GlobalMember(replication_group_id=rg.id, region=rg.region)
    _update(ctx, g, lambda r: r.spec.secondaries.append(member))


# ---- helpers --------------------------------------------------------------------------------------------


def _secondary(ctx: RequestContext, global_id: str, group_id: str, region: str,
               is_primary: Callable[[str], Exception]) -> tuple[GlobalReplicationGroup, GlobalMember]:
    """The datastore and its secondary member named, for a change of that member; `is_primary`
    makes the error for naming the primary instead."""
    g = _get(ctx, global_id)
    member = _named_member(g, group_id, region)
    if member == g.current_primary():
        raise is_primary(g.id)
    _require_stable(g)
    return g, member


def _named_member(g: GlobalReplicationGroup, group_id: str, region: str) -> GlobalMember:
    wanted = GlobalMember(replication_group_id=group_id.lower(), region=region)
    if wanted not in g.members():
        raise v.invalid(f"Replication group {group_id} in {region} is not a member of global replication group "
                        f"{g.id}.")
    return wanted


def _require_stable(g: GlobalReplicationGroup) -> None:
    if g.failing_over():
        raise InvalidGlobalReplicationGroupStateFault(f"Global replication group {g.id} is failing over.")


def _update(ctx: RequestContext, g: GlobalReplicationGroup,
            change: Callable[[GlobalReplicationGroup], None]) -> GlobalReplicationGroup:
    updated = ctx.services.store.update(g.key, GlobalReplicationGroup, change)
    if updated is None:
        raise GlobalReplicationGroupNotFoundFault(f"Global replication group {g.id} not found.")
    ctx.services.enqueue(updated.key)
    return updated


def _set_membership(ctx: RequestContext, rg: ReplicationGroup, global_id: str | None) -> None:
    def change(r: ReplicationGroup) -> None:
        r.spec.global_group = global_id

    ctx.services.store.update(rg.key, ReplicationGroup, change)
    ctx.services.enqueue(rg.key)


def _set_failover(ctx: RequestContext, rg: ReplicationGroup, wanted: bool) -> None:
    def change(r: ReplicationGroup) -> None:
        if r.spec.automatic_failover != wanted:
            r.spec.automatic_failover = wanted
            r.generation += 1

    ctx.services.store.update(rg.key, ReplicationGroup, change)
    ctx.services.enqueue(rg.key)


HANDLERS: HandlerTable = {
    "CreateGlobalReplicationGroup": create_global_replication_group,
    "DescribeGlobalReplicationGroups": describe_global_replication_groups,
    "ModifyGlobalReplicationGroup": modify_global_replication_group,
    "DeleteGlobalReplicationGroup": delete_global_replication_group,
    "DisassociateGlobalReplicationGroup": disassociate_global_replication_group,
    "FailoverGlobalReplicationGroup": failover_global_replication_group,
    "IncreaseNodeGroupsInGlobalReplicationGroup": increase_node_groups,
    "DecreaseNodeGroupsInGlobalReplicationGroup": decrease_node_groups,
    "RebalanceSlotsInGlobalReplicationGroup": rebalance_slots,
}
