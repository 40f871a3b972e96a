"""Security of replication groups with cluster mode enabled: what differs from a group without it.

TLS, AUTH tokens and user groups of a cluster-mode group are validated and recorded by
security.py, as for any group; the reconciler starts every node of every shard with them and
applies token and user changes live on every node (reconciler/replication_groups/security.py).
What is refused, with a message that says so:
- turning in-transit encryption on or off, or changing its mode, on a running cluster-mode group:
  each restarts every node, and the rolling restart (rollout.py) serves groups of one shard only;
- IAM users: an IAM authenticator stands in front of each node's client port, but what a cluster
  announces (CLUSTER SLOTS / SHARDS, MOVED) and its bus are not proven through it here.
"""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.handlers.security import Asked
from controlplane.state.acl import caches_using_group
from controlplane.state.records import ReplicationGroup
from controlplane.state.users import User, UserGroup

# ModifyReplicationGroup members a running cluster-mode group takes (applied live to its nodes).
LIVE = frozenset({"AuthToken", "AuthTokenUpdateStrategy", "UserGroupIdsToAdd", "UserGroupIdsToRemove",
                  "RemoveUserGroups"})
# What it refuses with transit_change's message rather than the generic one.
TRANSIT = frozenset({"TransitEncryptionEnabled", "TransitEncryptionMode"})

_IAM = ("Users with AuthenticationMode iam are not supported by elasticache-local yet in a replication group "
        "with cluster mode enabled")


def handled(rg: ReplicationGroup, name: str) -> bool:
    """Whether this module decides on ModifyReplicationGroup member `name` for `rg`."""
    return rg.cluster_enabled and name in LIVE | TRANSIT


def on_modify(rg: ReplicationGroup, asked: Asked) -> None:
    """Refuse what a running cluster-mode group cannot change (call before security.on_modify)."""
    if not rg.cluster_enabled:
        return
    current = rg.spec.security
    if (asked.transit is not None and asked.transit != current.transit_encryption) or (
            asked.mode is not None and asked.mode != current.transit_mode):
        raise v.combination(
            f"Changing in-transit encryption (TransitEncryptionEnabled, TransitEncryptionMode) of replication group "
            f"{rg.id}, which has cluster mode enabled, is not supported by elasticache-local yet: it restarts every "
            "node, and the rolling restart serves groups without cluster mode only. Create a new group with "
            "TransitEncryptionEnabled (and TransitEncryptionMode) instead.")


def refuse_iam(ctx: RequestContext, group_ids: Iterable[str]) -> None:
    """A cluster-mode group's user groups may not hold IAM users."""
    for gid in group_ids:
        group = ctx.services.store.get(ctx.key(UserGroup.KIND, gid), UserGroup)
        if group is not None and any(u.spec.auth_type == "iam" for u in _users(ctx, group.spec.user_ids)):
            raise v.combination(f"{_IAM}: user group {gid} has one.")


def refuse_iam_change(ctx: RequestContext, group: UserGroup, users: Iterable[User]) -> None:
    """A user group used by a cluster-mode group may not get IAM users (ModifyUserGroup, ModifyUser)."""
    if not any(u.spec.auth_type == "iam" for u in users):
        return
    for rg in caches_using_group(ctx.services.store, group):
        if rg.cluster_enabled:
            raise v.combination(f"{_IAM}: user group {group.id} is used by replication group {rg.id}.")


def _users(ctx: RequestContext, ids: Iterable[str]) -> list[User]:
    found = (ctx.services.store.get(ctx.key(User.KIND, uid), User) for uid in ids)
    return [u for u in found if u is not None]
