"""A running group's security changes, applied to its nodes (state/acl.py's hook).

Nodes start with what the group asks (members.py `start`: a new group, a replacement after a
failover, a new replica, a restore). What changes later reaches the running nodes here:
- AUTH tokens (ROTATE, SET, DELETE) and RBAC users (user groups added or removed, ModifyUser,
  ModifyUserGroup): `runtime.apply_users` on every member, primary and replicas, live: no
  restart, connected clients stay connected.
- the TLS mode (preferred <-> required): rollout.py's rolling restart restarts each node whose
  mode differs, replicas first, then the primary after a switchover to a replica.
Once every member has it, `status.security_applied` is written with what was asked when this
pass started, and the group's users and user groups are looked at again (they read active once
every group using them has them)."""

from __future__ import annotations

from collections.abc import Callable

from controlplane.reconciler.errors import PermanentError, TemporaryError
from controlplane.reconciler.replication_groups.context import RG, GroupContext
from controlplane.reconciler.security import acl_users, tls_of
from controlplane.state.acl import desired_security, node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.security import AppliedSecurity
from controlplane.state.users import User, UserGroup
from engine import RuntimeError_


class GroupSecurity:
    def __init__(self, ctx: GroupContext, enqueue: Callable[[ResourceKey], None] | None) -> None:
        self._ctx = ctx
        self._enqueue = enqueue

    def converge(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        """Call with every member running with its role. Applies the group's users to every
        member and records it; a TLS mode some member does not run yet waits for the roll."""
        ctx = self._ctx
        desired = desired_security(ctx.store, rg)
        applied = rg.status.security_applied
        if applied == desired or (applied is None and desired == AppliedSecurity()):
            return rg  # nothing asked of a group without security: nothing recorded, as before
        acl = node_acl(ctx.store, rg)
        tls = tls_of(acl)
        if any(not m.status.nodes or m.status.nodes[0].tls != tls for m in members):
            return rg  # the rolling restart (rollout.py) brings them; a later pass records it
        if tls is not None:  # a node without TLS has no security, and no users to change
            if ctx.infra.secrets is None:
                raise PermanentError("this service has no admin user to secure nodes with")
            users = acl_users(acl, ctx.infra.secrets.admin)
            for m in members:
                try:
                    ctx.infra.runtime.apply_users(ctx.name(rg, m.id), users)
                except RuntimeError_ as exc:
                    raise TemporaryError(f"applying the users of {m.id}: {exc}", delay=0.5) from exc
        rg = ctx.write(rg, lambda s: setattr(s, "security_applied", desired))
        if applied is not None:
            ctx.emit(RG, rg.id, rg, f"Security of replication group {rg.id} applied to its nodes")
        self._tell_users(rg, applied, desired)
        return rg

    def _tell_users(self, rg: ReplicationGroup, before: AppliedSecurity | None, now: AppliedSecurity) -> None:
        """The user groups and users the change touched look again (now or once in sync)."""
        if self._enqueue is None:
            return
        groups = set(now.user_group_ids) | set(before.user_group_ids if before else [])
        users = set(now.acl_users) | set(before.acl_users if before else {})
        for gid in sorted(groups):
            self._enqueue(ResourceKey(UserGroup.KIND, rg.account, rg.region, gid))
        for uid in sorted(users):
            self._enqueue(ResourceKey(User.KIND, rg.account, rg.region, uid))
