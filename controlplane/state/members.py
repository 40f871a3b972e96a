"""Which cache clusters are members of a replication group."""

from __future__ import annotations

from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.store import Store


def members_of(store: Store, rg: ReplicationGroup) -> list[CacheCluster]:
    return [c for c in store.records(CacheCluster, rg.account, rg.region) if c.spec.replication_group_id == rg.id]
