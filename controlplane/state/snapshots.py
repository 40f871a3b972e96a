"""Snapshot records: a backup of a cache cluster or a replication group, as an RDB file the
engine wrote, kept under the data directory (outside every node's directory, so it outlives its
cache). Spec is what was asked (by a handler, or by the backup scheduler acting as the service's
own user for automatic backups) with the source's configuration at that moment; status is what
the reconciler did: the file, its size, the node it came from."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from controlplane.catalog import aws_release
from controlplane.state.records import CacheCluster, Record, ReplicationGroup

if TYPE_CHECKING:  # the store reads these records: a runtime import would be circular
    from controlplane.state.store import Store


class ShardConfig(BaseModel):
    """A node group of a cluster-mode source, as DescribeSnapshots' NodeGroupConfiguration shows it."""

    id: str
    slots: str  # "0-5460" or "0-100,200-300"
    replica_count: int
    primary_az: str | None = None
    replica_azs: list[str] = Field(default_factory=list)


class SourceConfig(BaseModel):
    """The source's configuration when the snapshot was asked for (shown by DescribeSnapshots,
    and what a restore starts from when the caller does not say otherwise)."""

    engine: str
    engine_version: str  # AWS's release of the source's line, as the snapshot shows it
    node_type: str
    num_nodes: int = 1
    port: int
    parameter_group: str
    subnet_group: str | None = None
    preferred_az: str | None = None
    maintenance_window: str
    snapshot_window: str | None = None
    snapshot_retention_limit: int = 0
    topic_arn: str | None = None
    auto_minor_version_upgrade: bool = True
    cluster_created_at: datetime | None = None
    # Replication groups
    description: str | None = None
    automatic_failover: str | None = None  # "enabled" | "disabled"
    num_node_groups: int | None = None
    replica_count: int | None = None
    primary_az: str | None = None
    replica_azs: list[str] = Field(default_factory=list)
    shards: list[ShardConfig] = Field(default_factory=list)  # cluster mode: each node group's configuration


class Export(BaseModel):
    """CopySnapshot with TargetBucket: the RDB goes to an S3 bucket as `key`."""

    seq: int
    bucket: str
    key: str


class SnapshotSpec(BaseModel):
    source: Literal["manual", "automated"] = "manual"
    cache_cluster_id: str | None = None  # the source cluster (for a group: the member saved from, if chosen)
    replication_group_id: str | None = None
    copy_of: str | None = None  # CopySnapshot: the snapshot whose file this one copies
    kms_key_id: str | None = None
    config: SourceConfig
    # Set when this snapshot is a DeleteCacheCluster/DeleteReplicationGroup final snapshot.
    final: bool = False
    source_seq: int = 0  # the source's spec.snapshot_seq this snapshot answers (manual ones)
    exports: list[Export] = Field(default_factory=list)
    delete_requested: bool = False


class NodeSnapshotStatus(BaseModel):
    cache_cluster_id: str
    node_group_id: str | None = None
    cache_node_id: str
    size: int  # bytes of the RDB file
    created_at: datetime  # SnapshotCreateTime
    node_created_at: datetime | None = None
    file: str | None = None  # a cluster-mode snapshot's RDB of this node group (relative, as SnapshotStatus.file)


class SnapshotStatus(BaseModel):
    # None until the reconciler acts ("creating", or "copying" for a copy).
    phase: Literal["creating", "copying", "available", "failed", "deleting"] | None = None
    file: str | None = None  # relative to the snapshots directory
    nodes: list[NodeSnapshotStatus] = Field(default_factory=list)
    started_at: datetime | None = None
    failure: str | None = None
    attempts: int = 0
    retry_at: datetime | None = None  # a failed automatic backup is tried again from then on
    exported_seq: int = 0  # the last Export carried out
    export_failure: str | None = None


class Snapshot(Record):
    KIND: ClassVar[str] = "snapshot"

    spec: SnapshotSpec
    status: SnapshotStatus = Field(default_factory=SnapshotStatus)

    def api_status(self) -> str:
        if self.spec.delete_requested:
            return "deleting"
        if self.status.phase is None:
            return "copying" if self.spec.copy_of else "creating"
        if self.status.phase == "available" and any(x.seq > self.status.exported_seq for x in self.spec.exports):
            return "exporting"
        return self.status.phase

    def in_progress(self) -> bool:
        return self.api_status() in ("creating", "copying", "exporting")


def restoring_from(store: Store, account: str, region: str) -> set[str]:
    """Names of the snapshots a cache is being restored from now: they read "restoring" and
    their files must stay."""
    names: set[str] = set()
    caches: list[CacheCluster | ReplicationGroup] = [*store.records(CacheCluster, account, region),
                                                     *store.records(ReplicationGroup, account, region)]
    for rec in caches:
        restore = rec.spec.restore
        if restore is not None and restore.snapshot and not rec.status.restored and rec.status.failure is None:
            names.add(restore.snapshot)
    return names


# ---- the source's configuration, as a snapshot keeps it ------------------------------------


def cluster_config(c: CacheCluster) -> SourceConfig:
    target = c.target()
    zones = {n.az for n in c.status.nodes}
    return SourceConfig(
        engine=c.spec.engine, engine_version=aws_release(c.spec.engine, target.engine_version),
        node_type=target.node_type, num_nodes=len(c.status.nodes) or target.num_nodes, port=c.spec.port,
        parameter_group=c.spec.parameter_group, subnet_group=c.spec.subnet_group,
        preferred_az=zones.pop() if len(zones) == 1 else None, maintenance_window=c.spec.maintenance_window,
        snapshot_window=c.spec.snapshot_window, snapshot_retention_limit=c.spec.snapshot_retention_limit,
        topic_arn=c.spec.notification_topic_arn, auto_minor_version_upgrade=c.spec.auto_minor_version_upgrade,
        cluster_created_at=c.created_at,
    )


def group_config(rg: ReplicationGroup, members: list[CacheCluster]) -> SourceConfig:
    primary = next((x for x in members if x.id == rg.status.primary), members[0] if members else None)
    replicas = [x for x in members if x is not primary]
    version = aws_release(rg.spec.engine, rg.target().engine_version)
    return SourceConfig(
        engine=rg.spec.engine, engine_version=version, node_type=rg.target().node_type, num_nodes=len(members),
        port=rg.spec.port, parameter_group=rg.spec.parameter_group, subnet_group=rg.spec.subnet_group,
        maintenance_window=rg.spec.maintenance_window,
        snapshot_window=rg.spec.snapshot_window, snapshot_retention_limit=rg.spec.snapshot_retention_limit,
        topic_arn=rg.spec.notification_topic_arn, auto_minor_version_upgrade=rg.spec.auto_minor_version_upgrade,
        cluster_created_at=rg.created_at, description=rg.spec.description,
        automatic_failover="enabled" if rg.spec.automatic_failover else "disabled", num_node_groups=1,
        replica_count=len(replicas),
        primary_az=primary.status.nodes[0].az if primary and primary.status.nodes else None,
        replica_azs=[x.status.nodes[0].az for x in replicas if x.status.nodes],
    )


def sharded_config(rg: ReplicationGroup, members: list[CacheCluster]) -> SourceConfig:
    """A cluster-mode group's configuration: the group's, with each node group's slots, replicas
    and zones."""
    config = group_config(rg, members)
    shards = []
    for group in rg.spec.node_groups:
        primary_id = rg.status.shard_primaries.get(group.id)
        own = [x for x in members if x.spec.node_group_id == group.id]
        azs = {x.id: x.status.nodes[0].az for x in own if x.status.nodes}
        shards.append(ShardConfig(id=group.id, slots=",".join(f"{a}-{b}" for a, b in group.slots),
                                  replica_count=len(own) - 1 if own else group.replica_count,
                                  primary_az=azs.get(primary_id or ""),
                                  replica_azs=[az for i, az in azs.items() if i != primary_id and az]))
    config.num_node_groups, config.shards = len(shards), shards
    config.replica_count, config.primary_az, config.replica_azs = None, None, []
    config.automatic_failover = "enabled" if rg.spec.automatic_failover else "disabled"
    return config


def replication_group_config(rg: ReplicationGroup, members: list[CacheCluster]) -> SourceConfig:
    """A group's configuration as a snapshot keeps it, with or without cluster mode."""
    return sharded_config(rg, members) if rg.cluster_enabled else group_config(rg, members)
