"""Typed resource records: spec (what the user asked; written by handlers only) and status (what
is observed; written by the reconcilers only), plus generation / observed_generation.
Pending changes stay in spec; what the maintenance window applied of them is recorded in status."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, NamedTuple, TypeVar

from pydantic import BaseModel, Field

from controlplane.state.migration import MigrationSpec, MigrationStatus, MigrationTest, migrating
from controlplane.state.security import AppliedSecurity, SecuritySpec, enforced, security_status


class ResourceKey(NamedTuple):
    kind: str
    account: str
    region: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.account}/{self.region}/{self.id}"


class Tag(BaseModel):
    key: str
    value: str = ""


class Record(BaseModel):
    """Common part of every stored resource."""

    KIND: ClassVar[str] = ""

    account: str
    region: str
    id: str
    created_at: datetime
    generation: int = 1
    observed_generation: int = 0
    tags: list[Tag] = Field(default_factory=list)

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.KIND, self.account, self.region, self.id)


# ---- cache clusters -------------------------------------------------------------------------


class PendingChanges(BaseModel):
    """Modifications waiting for the maintenance window (ApplyImmediately=false)."""

    num_nodes: int | None = None
    node_ids_to_remove: list[str] = Field(default_factory=list)
    engine_version: str | None = None
    node_type: str | None = None
    # Which request of the handlers these are: status records the window's application of a
    # set by copying it, so an application is never mistaken for a later request's with equal values.
    seq: int = 0

    def empty(self) -> bool:
        return (
            self.num_nodes is None
            and not self.node_ids_to_remove
            and self.engine_version is None
            and self.node_type is None
        )

    def minus(self, applied: PendingChanges) -> PendingChanges:
        """What of these changes `applied` (what the maintenance window carried out, recorded in
        status) does not cover yet: a field counts as applied when it holds the same value."""
        out = self.model_copy(deep=True)
        if applied.seq != self.seq:
            return out
        if (applied.num_nodes, applied.node_ids_to_remove) == (self.num_nodes, self.node_ids_to_remove):
            out.num_nodes, out.node_ids_to_remove = None, []
        if applied.engine_version == self.engine_version:
            out.engine_version = None
        if applied.node_type == self.node_type:
            out.node_type = None
        return out

    def applied_part(self, applied: PendingChanges) -> PendingChanges:
        """The changes of these that `applied` says were carried out."""
        rest = self.minus(applied)
        return PendingChanges(
            num_nodes=self.num_nodes if rest.num_nodes is None else None,
            node_ids_to_remove=list(self.node_ids_to_remove) if rest.num_nodes is None else [],
            engine_version=self.engine_version if rest.engine_version is None else None,
            node_type=self.node_type if rest.node_type is None else None,
        )


class RebootRequest(BaseModel):
    seq: int
    node_ids: list[str]


class RestoreSource(BaseModel):
    """CreateCacheCluster / CreateReplicationGroup with SnapshotName or SnapshotArns: the data the
    first primary node starts with. `file` is the snapshot's RDB (relative to the snapshots
    directory) or None for an S3 object, fetched by the reconciler."""

    snapshot: str | None = None
    file: str | None = None
    bucket: str | None = None
    key: str | None = None
    # One RDB per shard (a cluster-mode snapshot, several SnapshotArns), each as above; the
    # fields above then name the first. Restored into cluster mode, keys go where their slot is.
    shards: list[RestoreSource] = Field(default_factory=list)

    def describe(self) -> str:
        if self.snapshot:
            return f"snapshot {self.snapshot}"
        return ", ".join(f"s3://{p.bucket}/{p.key}" for p in self.shards or [self])

    def parts(self) -> list[RestoreSource]:
        """The RDB files to restore, one per shard of the source."""
        return list(self.shards) or [self]


class CacheClusterSpec(BaseModel):
    engine: str
    engine_version: str  # as requested (or the default), e.g. "7.0" or "1.6.22"
    node_type: str
    num_nodes: int
    port: int
    az_mode: str = "single-az"
    preferred_azs: list[str] = Field(default_factory=list)
    parameter_group: str
    subnet_group: str | None = None
    security_group_names: list[str] = Field(default_factory=list)
    security_group_ids: list[str] = Field(default_factory=list)
    maintenance_window: str
    snapshot_window: str | None = None
    snapshot_retention_limit: int = 0
    notification_topic_arn: str | None = None
    auto_minor_version_upgrade: bool = True
    replication_group_id: str | None = None
    node_group_id: str | None = None  # the shard of a cluster-mode group this member belongs to
    security: SecuritySpec = Field(default_factory=SecuritySpec)  # TLS and AUTH
    network_type: str = "ipv4"
    ip_discovery: str = "ipv4"
    # Node ids to drop when num_nodes goes down (memcached).
    node_ids_to_remove: list[str] = Field(default_factory=list)
    pending: PendingChanges = Field(default_factory=PendingChanges)
    reboot: RebootRequest | None = None
    restore: RestoreSource | None = None
    # Manual CreateSnapshot calls, for AWS's quota of 20 per node per 24 hours.
    snapshot_calls: list[datetime] = Field(default_factory=list)
    snapshot_seq: int = 0  # the last CreateSnapshot of this cache: it reads "snapshotting" until it ends
    delete_requested: bool = False
    final_snapshot: str | None = None  # DeleteCacheCluster FinalSnapshotIdentifier: taken before the delete


class NodeStatus(BaseModel):
    node_id: str
    status: str  # creating | available | rebooting | deleting
    az: str
    host: str
    port: int
    created_at: datetime
    version: str | None = None  # as the node reports it
    node_type: str | None = None  # the node type its memory settings were started with
    # Floating endpoint addresses the node was last told to hold (replication group members);
    # None: not known, so the next pass sets them again (idempotent).
    addresses: list[str] | None = None
    # The TLS mode the node was started with ("preferred" | "required"; None: plain text, no
    # security): a cache whose mode changes restarts the nodes that differ (reconciler/security.py).
    tls: str | None = None
    # Why the node was restarted on purpose (reconciler/texts.py: a patch, a node type change, a
    # reboot...) until it answers again; None: a node seen restarting is being recovered.
    planned: str | None = None
    # The parameter group's engine settings the node runs with (state.parameter_groups), set at
    # its start and by live changes; None: started before parameter groups were applied.
    parameters: dict[str, str] | None = None
    parameter_status: str | None = None  # in-sync | applying | pending-reboot (None: in-sync)
    # A node with TLS that replicates in plain text as `default` (engine TlsFiles.replication
    # False): while some node of its group has no TLS, as TLS is turned on or off on a running
    # group (reconciler/replication_groups/security.py). False: over TLS as the service's user.
    plain_link: bool = False


class CacheClusterStatus(BaseModel):
    # None until the reconciler first acts: the API then shows "creating".
    phase: str | None = None
    engine_version: str | None = None  # what the nodes really run
    nodes: list[NodeStatus] = Field(default_factory=list)
    config_host: str | None = None  # memcached configuration endpoint
    config_port: int | None = None
    rebooted_seq: int = 0
    last_node_number: int = 0  # node ids are never reused within a cluster
    modifying_from: int | None = None  # node count before a resize in progress
    reboot_started: int = 0  # the reboot request whose nodes were restarted (rebooted_seq: finished)
    # The spec's pending changes the maintenance window carried out (spec is the handlers': they
    # stay there; the API shows spec.pending minus this).
    pending_applied: PendingChanges = Field(default_factory=PendingChanges)
    announced_available: bool = False
    failure: str | None = None
    # The snapshot whose save runs on this cluster's node now (the source reads "snapshotting").
    snapshotting: str | None = None
    restored: bool = False  # the restore's data is loaded: later starts of the node start empty
    restore_started: bool = False  # a node was started with the restore's data
    snapshot_seq_done: int = 0  # the last spec.snapshot_seq whose snapshot ended (available or failed)
    # The final snapshot that failed: the delete that asked for it was not carried out.
    final_snapshot_failed: str | None = None
    last_backup_at: datetime | None = None  # the last automatic backup started
    # What every node enforces of spec.security (None: nothing recorded yet; see state.acl).
    security_applied: AppliedSecurity | None = None


class CacheCluster(Record):
    KIND: ClassVar[str] = "cache-cluster"

    spec: CacheClusterSpec
    status: CacheClusterStatus = Field(default_factory=CacheClusterStatus)

    def delete_refused(self) -> bool:
        """The delete asked for a final snapshot, which failed: the cluster stays."""
        return self.spec.final_snapshot is not None and self.status.final_snapshot_failed == self.spec.final_snapshot

    def deleting(self) -> bool:
        """A delete was asked for and goes on (not stopped by a failed final snapshot)."""
        return self.spec.delete_requested and not self.delete_refused()

    def api_status(self) -> str:
        if self.deleting():
            return "deleting"
        if self.status.phase is None:
            return "creating"
        if self.spec.reboot is not None and self.spec.reboot.seq > self.status.rebooted_seq:
            return "rebooting cache cluster nodes"
        if self.status.phase == "available" and any(n.status == "rebooting" for n in self.status.nodes):
            return "rebooting cache cluster nodes"  # a node the loop saw down is being recovered
        if self.status.phase == "available" and self.observed_generation < self.generation:
            return "modifying"
        held = None if self.spec.replication_group_id else security_status(self.spec.security,
                                                                             self.status.security_applied)
        if self.status.phase == "available" and held is not None:
            return held  # TLS or AUTH asked and not on every node yet (a member's group says it)
        if self.status.phase == "available" and (self.status.snapshotting
                                                 or self.spec.snapshot_seq > self.status.snapshot_seq_done):
            return "snapshotting"
        return self.status.phase

    def node(self, node_id: str) -> NodeStatus | None:
        return next((n for n in self.status.nodes if n.node_id == node_id), None)

    def target(self) -> CacheClusterSpec:
        """What the nodes should be: the spec with the pending changes the window applied."""
        return _overlay(self.spec, self.spec.pending.applied_part(self.status.pending_applied))

    def unapplied(self) -> PendingChanges:
        """Pending changes still waiting for the maintenance window (PendingModifiedValues)."""
        return self.spec.pending.minus(self.status.pending_applied)


# ---- replication groups (cluster mode disabled: one node group, "0001") -----------------


class FailoverRequest(BaseModel):
    seq: int
    node_group: str = "0001"
    requested_at: datetime


class PrimaryChange(BaseModel):
    """ModifyReplicationGroup PrimaryClusterId: a planned switchover to this member."""

    seq: int
    member: str


class NodeGroupSpec(BaseModel):
    """One shard of a cluster-mode group: its hash slots and how many replicas it has."""

    id: str  # "0001", ...
    slots: list[tuple[int, int]]
    replica_count: int
    primary_az: str | None = None
    replica_azs: list[str] = Field(default_factory=list)

    def slots_text(self) -> str:
        """AWS's form: "0-5460" (ranges joined by commas)."""
        return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in self.slots)


class ReplicationGroupSpec(BaseModel):
    description: str
    engine: str
    engine_version: str
    node_type: str
    port: int
    parameter_group: str
    maintenance_window: str
    snapshot_window: str
    snapshot_retention_limit: int = 0
    snapshotting_cluster_id: str | None = None
    notification_topic_arn: str | None = None
    auto_minor_version_upgrade: bool = True
    security_group_ids: list[str] = Field(default_factory=list)
    security_group_names: list[str] = Field(default_factory=list)
    subnet_group: str | None = None  # its members' nodes are placed in this group's zones
    automatic_failover: bool = False
    multi_az: bool = False
    initial_primary: str | None = None  # member cluster id chosen as primary at creation
    primary_change: PrimaryChange | None = None
    test_failover: FailoverRequest | None = None
    # TestFailover calls, for AWS's limit of 15 node groups per rolling 24 hours.
    test_failover_calls: list[datetime] = Field(default_factory=list)
    pending: PendingChanges = Field(default_factory=PendingChanges)
    restore: RestoreSource | None = None
    snapshot_calls: list[datetime] = Field(default_factory=list)  # as for cache clusters
    snapshot_seq: int = 0
    delete_requested: bool = False
    final_snapshot: str | None = None  # as for cache clusters
    retain_primary_cluster: bool = False
    security: SecuritySpec = Field(default_factory=SecuritySpec)  # TLS, AUTH and RBAC
    migration: MigrationSpec | None = None  # StartMigration (state/migration.py)
    migration_test: MigrationTest | None = None  # TestMigration
    global_group: str | None = None  # the global datastore it joined (state/global_datastores.py)
    cluster_mode: str = "disabled"  # ClusterMode: enabled | disabled | compatible
    # Cluster mode enabled: the shards (empty: one node group, no Redis Cluster).
    node_groups: list[NodeGroupSpec] = Field(default_factory=list)


class FailoverStep(StrEnum):
    """The failover state machine's steps, in order (select is re-entered when a candidate fails)."""

    DETECTED = "detected"  # decided: the primary is down (or TestFailover was called)
    FENCE = "fence"  # the old primary is made surely dead: it releases its addresses, takes no writes
    SELECT = "select"  # the best healthy replica: highest offset, then lowest id
    PROMOTE = "promote"  # REPLICAOF NO ONE
    WAIT_PROMOTION = "wait_promotion"  # until INFO says role:master (timeout: back to select)
    REPOINT = "repoint"  # the primary endpoint moves to the new primary
    RECONFIGURE = "reconfigure"  # the other replicas follow the new primary
    REPLACE = "replace"  # the old primary's node starts again, empty, as a replica
    DONE = "done"  # the state is cleared


class FailoverState(BaseModel):
    """The failover state machine, persisted so a restarted control plane resumes it from its step."""

    step: FailoverStep
    reason: str  # "automatic" | "test"
    old_primary: str  # member cluster id
    candidate: str | None = None
    excluded: list[str] = Field(default_factory=list)
    started_at: datetime  # the overall timeout counts from here
    entered_at: datetime | None = None  # when `step` was entered (None: written before this was kept)
    test_seq: int = 0
    node_group: str | None = None  # cluster mode: the shard failing over


class ReplicationGroupStatus(BaseModel):
    phase: str | None = None
    primary: str | None = None  # member cluster id of the current primary
    primary_host: str | None = None  # the primary endpoint
    primary_port: int | None = None
    reader_host: str | None = None  # the reader endpoint
    reader_port: int | None = None
    # Endpoints served by a TCP forwarder in the service (where an address cannot move between
    # nodes: the 127.0.0.1 "ports" addressing, or engines before 7.0), instead of floating addresses.
    proxied: bool = False
    reader_on: str | None = None  # member holding the reader address
    failover: FailoverState | None = None
    # The end of the last automatic failover (completed or aborted): the cooldown counts from here.
    last_failover_at: datetime | None = None
    # An automatic failover of the current primary that was given up on (no replica could be
    # promoted): reported once; the primary is restarted in place. Cleared when it answers again.
    failover_aborted: str | None = None
    # An automatic failover held back by the cooldown until then (reported once).
    failover_held_until: datetime | None = None
    test_failover_done: int = 0
    primary_change_done: int = 0
    announced_available: bool = False
    af_applied: bool | None = None  # the AutomaticFailover setting the loop last acted on
    pending_applied: PendingChanges = Field(default_factory=PendingChanges)  # as for cache clusters
    failure: str | None = None
    snapshotting: str | None = None  # as for cache clusters
    restored: bool = False
    restore_started: bool = False
    snapshot_seq_done: int = 0
    final_snapshot_failed: str | None = None
    last_backup_at: datetime | None = None
    security_applied: AppliedSecurity | None = None  # as for cache clusters
    migration: MigrationStatus = Field(default_factory=MigrationStatus)
    # Cluster mode: the configuration endpoint (a floating address held by `config_on`'s node,
    # or a forwarder where addresses cannot move), each shard's primary member, and whether the
    # cluster was formed (met, slots assigned, replicas attached) once.
    config_host: str | None = None
    config_port: int | None = None
    config_on: str | None = None
    shard_primaries: dict[str, str] = Field(default_factory=dict)
    cluster_formed: bool = False


class ReplicationGroup(Record):
    KIND: ClassVar[str] = "replication-group"

    spec: ReplicationGroupSpec
    status: ReplicationGroupStatus = Field(default_factory=ReplicationGroupStatus)

    def target(self) -> ReplicationGroupSpec:
        """What the nodes should be: the spec with the pending changes the window applied."""
        return _overlay(self.spec, self.spec.pending.applied_part(self.status.pending_applied))

    def unapplied(self) -> PendingChanges:
        return self.spec.pending.minus(self.status.pending_applied)

    @property
    def cluster_enabled(self) -> bool:
        return bool(self.spec.node_groups)

    def delete_refused(self) -> bool:
        return self.spec.final_snapshot is not None and self.status.final_snapshot_failed == self.spec.final_snapshot

    def deleting(self) -> bool:
        return self.spec.delete_requested and not self.delete_refused()

    def api_status(self) -> str:
        if self.deleting():
            return "deleting"
        if self.status.phase is None:
            return "creating"
        if self.status.phase == "available" and (
            self.observed_generation < self.generation or self.status.failover is not None
            or (self.spec.test_failover is not None and self.spec.test_failover.seq > self.status.test_failover_done)
        ):
            return "modifying"
        if self.status.phase == "available" and migrating(self.spec.migration, self.status.migration):
            return "migrating"
        held = security_status(self.spec.security, enforced(self.status.security_applied,
                                                            self.status.announced_available))
        if self.status.phase == "available" and held is not None:
            return held  # TLS, AUTH or a user group asked and not on every node yet
        if self.status.phase == "available" and (self.status.snapshotting
                                                 or self.spec.snapshot_seq > self.status.snapshot_seq_done):
            return "snapshotting"
        return self.status.phase


S = TypeVar("S", CacheClusterSpec, ReplicationGroupSpec)


def _overlay(spec: S, applied: PendingChanges) -> S:
    if applied.empty():
        return spec
    out = spec.model_copy(deep=True)
    if applied.node_type is not None:
        out.node_type = applied.node_type
    if applied.engine_version is not None:
        out.engine_version = applied.engine_version
    if applied.num_nodes is not None and isinstance(out, CacheClusterSpec):
        out.num_nodes, out.node_ids_to_remove = applied.num_nodes, list(applied.node_ids_to_remove)
    return out


# ---- events ---------------------------------------------------------------------------------


class Event(BaseModel):
    account: str
    region: str
    source_type: str
    source_id: str
    message: str
    date: datetime
    seq: int = 0  # the store's order of events (set when read back): paging markers name it
