"""Every kind of stored record, by its KIND: what the store reads back and tags resolve ARNs to.
A new resource family adds its record class here (and nowhere else)."""

from __future__ import annotations

from controlplane.state.global_datastores import GlobalReplicationGroup
from controlplane.state.parameter_groups import CacheParameterGroup
from controlplane.state.records import CacheCluster, Record, ReplicationGroup
from controlplane.state.reserved import ReservedCacheNode
from controlplane.state.serverless import ServerlessCache
from controlplane.state.service_updates import ServiceUpdate, UpdateAction
from controlplane.state.snapshots import Snapshot
from controlplane.state.subnet_groups import CacheSubnetGroup
from controlplane.state.users import User, UserGroup

RECORD_TYPES: dict[str, type[Record]] = {
    record.KIND: record
    for record in (CacheCluster, ReplicationGroup, Snapshot, ServiceUpdate, UpdateAction, User, UserGroup,
                   CacheSubnetGroup, ReservedCacheNode, GlobalReplicationGroup, CacheParameterGroup, ServerlessCache)
}
