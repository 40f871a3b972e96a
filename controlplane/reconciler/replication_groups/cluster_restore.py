"""A cluster-mode group created from a snapshot or from RDB files in S3 (SnapshotName /
SnapshotArns): one file per shard of the source, which may have had another shard count, or no
cluster mode at all. The group is built empty as any other; once its cluster is formed (every
slot served) and before it reads available, each file is loaded into a scratch node of its own
(cluster mode off, the group's engine and version) whose keys then go to the primary serving
their slot, server to server (NodeRuntime.move_keys: MIGRATE, values and TTLs as they are); the
primaries' replicas follow as for any write. The scratch node is removed after.

A file that cannot be loaded (not an RDB, cut short, corrupt: the scratch node exits) fails the
group as a one-shard restore does. A pass interrupted half way runs again from the start: keys
already moved are replaced by the same ones."""

from __future__ import annotations

import time
from dataclasses import replace

from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.infra import build_node_config
from controlplane.reconciler.nodes import PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.context import GroupContext
from controlplane.reconciler.replication_groups.restore import GroupRestore
from controlplane.reconciler.restores import RestoreFailed, Restores, owner
from controlplane.state.acl import node_acl
from controlplane.state.records import CacheCluster, ReplicationGroup, RestoreSource
from engine import NodeState, RuntimeError_

LOAD_TIMEOUT = 120.0  # seconds a scratch node has to load its file and answer
MOVE_TIMEOUT = 60.0  # seconds one MIGRATE batch may take


class ClusterLoad:
    def __init__(self, ctx: GroupContext, restore: GroupRestore, restores: Restores) -> None:
        self._ctx = ctx
        self._restore = restore
        self._restores = restores

    def run(self, rg: ReplicationGroup, members: list[CacheCluster], version: str) -> ReplicationGroup:
        """Load the restore's files into the formed cluster (once); returns the group, restored."""
        source = rg.spec.restore
        if source is None or rg.status.restored:
            return rg
        ctx = self._ctx
        owners = []
        for group in rg.spec.node_groups:
            primary = rg.status.shard_primaries.get(group.id)
            if primary is None:
                raise TemporaryError(f"node group {group.id} has no primary yet", delay=0.5)
            owners.append((list(group.slots), ctx.name(rg, primary)))
        first = next(m for m in members if m.id == rg.status.shard_primaries[rg.spec.node_groups[0].id])
        for index, part in enumerate(source.parts()):
            seed = self._restore_seed(rg, index, part)
            self._load(rg, first, version, index, seed, owners)
        for index in range(len(source.parts())):
            self._restores.done(_part_owner(rg, index))
        return self._restore.loaded(rg)

    def _restore_seed(self, rg: ReplicationGroup, index: int, part: RestoreSource) -> str:
        try:
            return self._restores.seed(_part_owner(rg, index), part)
        except RestoreFailed as exc:
            self._restore.failed(rg, str(exc))

    def _load(self, rg: ReplicationGroup, first: CacheCluster, version: str, index: int, seed: str,
              owners: list[tuple[list[tuple[int, int]], str]]) -> None:
        ctx, runtime = self._ctx, self._ctx.infra.runtime
        name = ctx.name(rg, f"restore-{index + 1}")
        runtime.remove(name)  # a scratch node of an interrupted pass
        with ctx.infra.alloc_lock:  # held until the node listens: no other node is given its address
            host, port = ctx.infra.allocate(ctx.infra.node_addresses, rg.spec.port, ctx.store)
            config = build_node_config(
                name=name, engine=rg.spec.engine, version=version, host=host, port=port,
                node_type=rg.target().node_type,
                labels={"account": rg.account, "region": rg.region, "cluster": f"{first.id}-restore",
                        "node": str(index + 1), "group": rg.id},
                security=ctx.infra.node_security(node_acl(ctx.store, rg), [host]))
            try:
                runtime.start(replace(config, seed=seed))
                ready = self._serves(name)
            except RuntimeError_ as exc:
                runtime.remove(name)
                raise TemporaryError(f"restore node: {exc}", delay=1.0) from exc
        try:
            if not ready:
                self._restore.failed(rg, f"the RDB file {index + 1} cannot be loaded (it is corrupt, or is not an "
                                         "RDB file the engine reads)")
            runtime.move_keys(name, owners, MOVE_TIMEOUT)
        except RuntimeError_ as exc:
            raise TemporaryError(f"restoring file {index + 1}: {exc}", delay=1.0) from exc
        finally:
            runtime.remove(name)

    def _serves(self, name: str) -> bool:
        """Whether the scratch node serves (has loaded its file) before LOAD_TIMEOUT; False when it
        exits first (a file it cannot load) or never answers. Only a probe proves it serves: the
        runtime's readiness report is a pause where there is none (docker)."""
        runtime = self._ctx.infra.runtime
        deadline = time.monotonic() + LOAD_TIMEOUT
        while time.monotonic() < deadline:
            if runtime.probe(name, PROBE_TIMEOUT).ok:
                return True
            info = runtime.inspect(name)
            if info is None or info.state is NodeState.EXITED:
                return False
            runtime.wait_ready(name, min(0.5, max(0.0, deadline - time.monotonic())))
        return False


def _part_owner(rg: ReplicationGroup, index: int) -> str:
    return f"{owner(rg)}-{index + 1}"
