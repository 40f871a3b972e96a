"""Online resharding of a cluster-mode group (ModifyReplicationGroupShardConfiguration).

Level-triggered, like the rest of the group's pass (cluster.py calls it once the cluster is
formed): the spec says which shard serves each slot; the nodes say which master serves it now
(each master's own claim in CLUSTER NODES, and the slots it is migrating or importing). Every
slot whose owner is not its shard's primary is moved there with its keys (engine: the runtime's
cluster_move_slots, redis-cli's reshard steps, many slots per round trip). A move interrupted
anywhere, by a crash or a restarted control plane, is finished by the next pass: the state of a
slot half moved is on the nodes themselves and the move resumes from it. New shards' nodes are
started, met and given their replicas by the cluster's own pass before any slot goes to them.
Removed shards (members of a node group the spec no longer has) give up their slots first; then
their nodes are stopped, forgotten by every other node (CLUSTER FORGET) and their members deleted.

Persisted: how many slots the resharding moves in all, and its progress (status), for
PendingModifiedValues.Resharding.SlotMigration.ProgressPercentage.
"""

from __future__ import annotations

import logging
import time

from controlplane.reconciler.errors import Requeue, TemporaryError
from controlplane.reconciler.replication_groups.context import CC, RG, GroupContext
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from engine import ClusterView, RuntimeError_

log = logging.getLogger("elasticache_local.resharding")

SLOTS_PER_CALL = 512  # slots per cluster_move_slots call: the progress is written between calls
# Seconds of moving per pass: the worker comes back at once (Requeue), but other groups' passes
# and spec changes are not held up behind a long resharding. Real time, not the loop's clock:
# it bounds work done, not a wait.
BUDGET = 2.0
AGAIN = 0.05  # seconds before the next pass reads the moved slots back


class Resharding:
    def __init__(self, ctx: GroupContext) -> None:
        self._ctx = ctx

    def converge(self, rg: ReplicationGroup, members: list[CacheCluster],
                 views: dict[str, ClusterView]) -> None:
        """Move what is not where the spec says; retire removed shards once they serve nothing.
        Returns when there is nothing to do; raises Requeue while there is."""
        shards = {g.id for g in rg.spec.node_groups}
        leaving = [m for m in members if (m.spec.node_group_id or "") not in shards]
        moves = self._moves(rg, members, views)
        if moves is None:
            return  # a shard's primary is not in the cluster yet: the cluster's own pass first
        if moves:
            self._move(rg, members, views, moves)
        if leaving:
            self._retire(rg, members, leaving, views)
            raise Requeue(f"node groups {', '.join(sorted({m.spec.node_group_id or '' for m in leaving}))} removed",
                          delay=AGAIN)

    def finish(self, rg: ReplicationGroup) -> None:
        """The cluster is as the spec says (cluster.py checked it): a resharding is complete."""
        if rg.status.resharding_progress is None:
            return

        def done(s: ReplicationGroupStatus) -> None:
            s.resharding_slots, s.resharding_progress = 0, None

        self._ctx.write(rg, done)
        self._ctx.emit(RG, rg.id, rg, f"Completed online resharding of replication group {rg.id}: "
                                      f"{len(rg.spec.node_groups)} node groups")

    # ---- moving slots ---------------------------------------------------------------------

    def _moves(self, rg: ReplicationGroup, members: list[CacheCluster],
               views: dict[str, ClusterView]) -> dict[tuple[str, str], list[int]] | None:
        """(member serving now, member that should) -> the slots to move; None: not decidable yet."""
        wanted: dict[int, str] = {}
        for group in rg.spec.node_groups:
            primary = rg.status.shard_primaries.get(group.id)
            if primary is None or primary not in views or views[primary].me.role != "master":
                return None
            for first, last in group.slots:
                wanted.update(dict.fromkeys(range(first, last + 1), primary))
        claims: dict[int, str] = {}
        for m in members:
            view = views.get(m.id)
            if view is None or view.me.role != "master":
                continue
            for first, last in view.me.slots:
                for slot in range(first, last + 1):
                    # Claimed by two (the target took it, the source has not heard yet): the one
                    # that is not the target may still hold keys; it is the source.
                    if slot not in claims or claims[slot] == wanted.get(slot):
                        claims[slot] = m.id
        moves: dict[tuple[str, str], list[int]] = {}
        for slot, owner in sorted(claims.items()):
            target = wanted.get(slot)
            if target is not None and owner != target:
                moves.setdefault((owner, target), []).append(slot)
        return moves

    def _move(self, rg: ReplicationGroup, members: list[CacheCluster], views: dict[str, ClusterView],
              moves: dict[tuple[str, str], list[int]]) -> None:
        ctx = self._ctx
        if rg.status.failover is not None:
            raise Requeue("resharding waits for the failover to end", delay=AGAIN)
        ids = {v.me.node_id for v in views.values()}
        for m in members:  # every node knows every other: SETSLOT NODE names them
            known = {n.node_id for n in views[m.id].nodes if not n.handshake}
            if not ids <= known:
                raise Requeue(f"member {m.id} has not met every node yet", delay=AGAIN)
        remaining = sum(len(s) for s in moves.values())
        if rg.status.resharding_progress is None:
            total = remaining
            before = sum(1 for v in views.values() if v.me.role == "master" and v.me.slots)

            def start(s: ReplicationGroupStatus) -> None:
                s.resharding_slots, s.resharding_progress = total, 0.0

            rg = ctx.write(rg, start)
            ctx.emit(RG, rg.id, rg, f"Started online resharding of replication group {rg.id}: {before} to "
                                    f"{len(rg.spec.node_groups)} node groups, {total} slots to move")
        masters = [ctx.name(rg, m.id) for m in members if views[m.id].me.role == "master"]
        deadline = time.monotonic() + BUDGET
        moved_keys = 0
        try:
            for (source, target), slots in sorted(moves.items()):
                for start_at in range(0, len(slots), SLOTS_PER_CALL):
                    chunk = slots[start_at:start_at + SLOTS_PER_CALL]
                    moved_keys += ctx.infra.runtime.cluster_move_slots(
                        ctx.name(rg, source), ctx.name(rg, target), chunk, masters)
                    remaining -= len(chunk)
                    if time.monotonic() > deadline:
                        raise _OutOfTime
        except _OutOfTime:
            pass
        except RuntimeError_ as exc:
            raise TemporaryError(f"resharding: {exc}", delay=0.2) from exc
        finally:
            self._progress(rg, remaining)
        log.info("%s: moved %d keys; %d slots to go", rg.id, moved_keys, remaining)
        raise Requeue(f"resharding: {remaining} slots to move", delay=AGAIN)

    def _progress(self, rg: ReplicationGroup, remaining: int) -> None:
        total = max(rg.status.resharding_slots, remaining, 1)
        progress = round(100.0 * (total - remaining) / total, 2)

        def update(s: ReplicationGroupStatus) -> None:
            s.resharding_slots = total
            s.resharding_progress = max(progress, s.resharding_progress or 0.0)

        self._ctx.write(rg, update)

    # ---- removed shards ---------------------------------------------------------------------

    def _retire(self, rg: ReplicationGroup, members: list[CacheCluster], leaving: list[CacheCluster],
                views: dict[str, ClusterView]) -> None:
        """The removed shards serve no slot now: their nodes go. The group stops naming them
        first (no failover starts for a primary stopped on purpose), then they are stopped (so
        that gossip cannot bring them back), forgotten, and their members deleted."""
        ctx = self._ctx
        gone = {m.id for m in leaving}
        shards = {m.spec.node_group_id for m in leaving}

        def drop(s: ReplicationGroupStatus) -> None:
            s.shard_primaries = {g: p for g, p in s.shard_primaries.items() if g not in shards}
            if s.config_on in gone:
                s.config_on = None

        rg = ctx.write(rg, drop)
        for m in leaving:
            ctx.nodes.discard(ctx.name(rg, m.id))
        forgotten = [views[m.id].me.node_id for m in leaving if m.id in views]
        for m in members:
            if m.id in gone:
                continue
            known = {n.node_id for n in views[m.id].nodes}
            try:
                ctx.infra.runtime.cluster_forget(ctx.name(rg, m.id), [i for i in forgotten if i in known])
            except RuntimeError_ as exc:
                # The cluster's own pass forgets what no member is any more; it will retry.
                log.warning("%s: member %s could not forget the removed nodes: %s", rg.id, m.id, exc)
        for m in leaving:
            ctx.store.delete(m.key)
            ctx.emit(CC, m.id, rg, "Cache cluster deleted")


class _OutOfTime(Exception):
    """This pass's budget is spent: the progress is written and the next pass goes on."""
