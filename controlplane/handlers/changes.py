"""What ModifyCacheCluster and ModifyReplicationGroup change alike: the settings that need no
node to restart, and the changes that restart nodes (node count, node type, engine version),
made at once with ApplyImmediately, else held as pending until the maintenance window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import overload

from controlplane.handlers import validate as v
from controlplane.model import messages as m
from controlplane.state.records import (
    CacheCluster,
    CacheClusterSpec,
    PendingChanges,
    ReplicationGroup,
    ReplicationGroupSpec,
)


@overload
def spec_to_change(rec: CacheCluster) -> CacheClusterSpec: ...


@overload
def spec_to_change(rec: ReplicationGroup) -> ReplicationGroupSpec: ...


def spec_to_change(rec: CacheCluster | ReplicationGroup) -> CacheClusterSpec | ReplicationGroupSpec:
    """The spec a modify starts from: what the nodes should be now (the pending changes the
    maintenance window already carried out folded in, so a request compares with what runs) and
    what is still pending. Status keeps recording what the window applied; the pending changes'
    `seq` keeps an old application from counting for a new request."""
    spec = rec.target().model_copy(deep=True)
    spec.pending = rec.unapplied()
    return spec


@dataclass
class NodeChanges:
    spec: CacheClusterSpec | ReplicationGroupSpec  # the new spec, being written
    immediate: bool
    pending: PendingChanges = field(default_factory=PendingChanges)
    # Whether the nodes change now: the record's generation goes up so the reconciler acts.
    restart: bool = False
    # The pending changes as they were before this request.
    before: PendingChanges = field(default_factory=PendingChanges)

    @classmethod
    def start(cls, spec: CacheClusterSpec | ReplicationGroupSpec, immediate: bool) -> NodeChanges:
        changes = cls(spec, immediate, spec.pending.model_copy(deep=True), before=spec.pending)
        if immediate and not changes.pending.empty():
            # "ApplyImmediately: the modifications in this request and any pending modifications".
            pending = changes.pending
            if pending.num_nodes is not None and isinstance(spec, CacheClusterSpec):
                spec.num_nodes, spec.node_ids_to_remove = pending.num_nodes, list(pending.node_ids_to_remove)
            spec.engine_version = pending.engine_version or spec.engine_version
            spec.node_type = pending.node_type or spec.node_type
            changes.pending, changes.restart = PendingChanges(), True
        return changes

    def num_nodes(self, spec: CacheClusterSpec, count: int, remove: list[str]) -> None:
        if self.immediate:
            spec.num_nodes, spec.node_ids_to_remove, self.restart = count, remove, True
        else:
            self.pending.num_nodes, self.pending.node_ids_to_remove = count, remove

    def node_type(self, value: str) -> None:
        if self.immediate:
            self.spec.node_type, self.restart = value, True
        else:
            self.pending.node_type = value

    def engine_version(self, value: str) -> None:
        if self.immediate:
            self.spec.engine_version, self.restart = value, True
        else:
            self.pending.engine_version = value

    def finish(self) -> None:
        """Store what is left pending in the spec, as a request of its own if it changed."""
        pending = self.pending if not self.immediate and not self.pending.empty() else PendingChanges()
        if pending != self.before:
            pending.seq = self.before.seq + 1
        self.spec.pending = pending


def shared_settings(spec: CacheClusterSpec | ReplicationGroupSpec,
                    params: m.ModifyCacheClusterMessage | m.ModifyReplicationGroupMessage) -> None:
    """The maintenance window, notifications, minor version upgrades and security groups."""
    window = params.get("PreferredMaintenanceWindow")
    if window:
        spec.maintenance_window = v.maintenance_window(window)
    if "NotificationTopicArn" in params:
        spec.notification_topic_arn = params["NotificationTopicArn"] or None
    if "AutoMinorVersionUpgrade" in params:
        spec.auto_minor_version_upgrade = params["AutoMinorVersionUpgrade"]
    if "SecurityGroupIds" in params:
        spec.security_group_ids = list(params["SecurityGroupIds"] or [])
