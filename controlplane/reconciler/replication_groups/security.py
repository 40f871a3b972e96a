"""A running group's security changes, applied to its nodes (state/acl.py's hook).

Nodes start with what the group asks (members.py `start`: a new group, a replacement after a
failover, a new replica, a restore). What changes later reaches the running nodes here:
- AUTH tokens (ROTATE, SET, DELETE) and RBAC users (user groups added or removed, ModifyUser,
  ModifyUserGroup): `runtime.apply_users` on every member, primary and replicas, live: no
  restart, connected clients stay connected.
- the TLS mode (preferred <-> required), and TLS itself (off -> preferred -> off): rollout.py's
  rolling restart restarts each node whose mode differs, replicas first, then the primary after
  a switchover to a replica.
- the replication link while TLS is turned on or off: a node without TLS has no TLS port and no
  admin user, so while any member runs without TLS (or the group asks for none) the nodes with
  TLS replicate in plain text as `default` (`plain_link`, NodeStatus.plain_link; their primary
  is in mode preferred then, so it has a plain-text port, and has no AUTH token or users: the
  handlers refuse those until TLS is on). `align_links` switches running nodes live
  (runtime.set_tls_replication) before each roll step and once the last node has TLS, so a
  switchover (FAILOVER TO connects the old primary to the new one) and every replica always
  have a link that works. All of it follows from the members' recorded node status: a
  restarted control plane carries on where it was.
Once every member has it, `status.security_applied` is written with what was asked when this
pass started, and the group's users and user groups are looked at again (they read active once
every group using them has them)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from controlplane.reconciler.errors import PermanentError, TemporaryError
from controlplane.reconciler.replication_groups.context import RG, GroupContext, replaced
from controlplane.reconciler.security import acl_users, tls_of
from controlplane.state.acl import desired_security, node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.security import AppliedSecurity
from controlplane.state.users import User, UserGroup
from engine import RuntimeError_

log = logging.getLogger("elasticache_local.reconciler")


class GroupSecurity:
    def __init__(self, ctx: GroupContext, enqueue: Callable[[ResourceKey], None] | None) -> None:
        self._ctx = ctx
        self._enqueue = enqueue

    def align_links(self, rg: ReplicationGroup, members: list[CacheCluster]) -> list[CacheCluster]:
        """Every running member with TLS replicates the way `plain_link` says, switched live."""
        ctx = self._ctx
        tls = node_acl(ctx.store, rg).tls
        out = list(members)
        for m in members:
            node = m.status.nodes[0] if m.status.nodes else None
            if node is None or node.tls is None or node.status != "available":
                continue
            plain = not tls or plain_link(members, m.id)
            if node.plain_link == plain:
                continue
            try:
                ctx.infra.runtime.set_tls_replication(ctx.name(rg, m.id), not plain)
            except RuntimeError_ as exc:
                raise TemporaryError(f"switching the replication link of {m.id}: {exc}", delay=0.5) from exc
            log.info("replication group %s: %s replicates %s", rg.id, m.id, "in plain text" if plain else "over TLS")

            def record(c: CacheCluster, plain: bool = plain) -> None:
                c.status.nodes[0].plain_link = plain

            out = replaced(out, ctx.update_member(m, record))
        return out

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
        members = self.align_links(rg, members)
        if any(not m.status.nodes or m.status.nodes[0].tls != tls or m.status.nodes[0].plain_link for m in members):
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
        if applied is not None or rg.status.announced_available:  # not when a new group is made
            before = applied or AppliedSecurity()
            if (before.transit_encryption, before.transit_mode) != (desired.transit_encryption, desired.transit_mode):
                now = f"mode {desired.transit_mode}" if desired.transit_encryption else "disabled"
                ctx.emit(RG, rg.id, rg, f"In-transit encryption of replication group {rg.id} is now {now} on all its "
                                        "nodes")
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


def plain_link(members: list[CacheCluster], member_id: str) -> bool:
    """Whether member `member_id`, with TLS, must replicate in plain text: some other member runs
    without TLS (a node not started yet does not count: it starts with what the group asks)."""
    return any(m.id != member_id and m.status.nodes and m.status.nodes[0].tls is None
               and m.status.nodes[0].status != "creating" for m in members)
