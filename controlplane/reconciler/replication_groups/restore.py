"""A group created from a snapshot (SnapshotName / SnapshotArns): its first primary starts with
the RDB file; replicas start empty and sync from it; the group is available only once they have.
A file that cannot be restored, or a primary that exits while loading it, fails the group
(create-failed; its members restore-failed) with an event saying why."""

from __future__ import annotations

from dataclasses import replace
from typing import NoReturn

from controlplane.reconciler.replication_groups.context import CC, RG, GroupContext
from controlplane.reconciler.restores import RestoreFailed, Restores, owner
from controlplane.state.records import CacheCluster, ReplicationGroup, ReplicationGroupStatus
from engine import NodeConfig


class GroupRestore:
    def __init__(self, ctx: GroupContext, restores: Restores) -> None:
        self._ctx = ctx
        self._restores = restores

    def pending(self, rg: ReplicationGroup, member_id: str) -> bool:
        """Whether this member's node is the one to start with the restore's data."""
        return (rg.spec.restore is not None and not rg.status.restored
                and member_id == (rg.status.primary or rg.spec.initial_primary))

    def seeded(self, rg: ReplicationGroup, config: NodeConfig) -> NodeConfig:
        assert rg.spec.restore is not None
        if rg.status.restore_started:
            self.failed(rg, "the primary exited before the group was restored (the RDB file is corrupt, or the "
                            "data does not fit the node type)")
        try:
            seed = self._restores.seed(owner(rg), rg.spec.restore)
        except RestoreFailed as exc:
            self.failed(rg, str(exc))
        return replace(config, seed=seed)

    def started(self, rg: ReplicationGroup) -> None:
        self._ctx.write(rg, lambda s: setattr(s, "restore_started", True))

    def settled(self, rg: ReplicationGroup) -> None:
        """The group settled (its replicas synced from the loaded primary): restored. Until then a
        primary that dies is a failed restore, never an empty group that reads restored."""
        if rg.spec.restore is not None and not rg.status.restored:
            self.loaded(rg)

    def loaded(self, rg: ReplicationGroup) -> ReplicationGroup:
        source = rg.spec.restore
        assert source is not None
        self._restores.done(owner(rg))
        rg = self._ctx.write(rg, lambda s: setattr(s, "restored", True))
        self._ctx.emit(RG, rg.id, rg, f"Restored replication group {rg.id} from {source.describe()}")
        return rg

    def failed(self, rg: ReplicationGroup, message: str) -> NoReturn:
        ctx = self._ctx
        self._restores.done(owner(rg))
        for m in ctx.members(rg):
            ctx.nodes.discard(ctx.name(rg, m.id))

            def change(c: CacheCluster) -> None:
                c.status.phase = "restore-failed"
                c.status.failure = message
                for n in c.status.nodes:
                    n.status = "creating"

            ctx.update_member(m, change)
            ctx.emit(CC, m.id, rg, f"Restore failed for cache cluster {m.id}: {message}")

        def group(s: ReplicationGroupStatus) -> None:
            s.phase, s.failure = "create-failed", message

        ctx.write(rg, group)
        ctx.emit(RG, rg.id, rg, f"Restore failed for replication group {rg.id}: {message}")
        raise RestoreFailed(message)

