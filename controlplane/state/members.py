"""Which cache clusters are members of a replication group, and keeping them in step with it."""

from __future__ import annotations

from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.store import Store


def members_of(store: Store, rg: ReplicationGroup) -> list[CacheCluster]:
    return [c for c in store.records(CacheCluster, rg.account, rg.region) if c.spec.replication_group_id == rg.id]


def sync_members(store: Store, rg: ReplicationGroup) -> None:
    """Members show the group's node type, version and pending changes, as AWS's do (written by
    the handlers, with the group's spec)."""
    target, pending = rg.target(), rg.unapplied()
    for member in members_of(store, rg):
        def change(c: CacheCluster) -> None:
            c.spec.node_type = target.node_type
            c.spec.engine_version = target.engine_version
            c.spec.pending = pending.model_copy()

        store.update(member.key, CacheCluster, change)
