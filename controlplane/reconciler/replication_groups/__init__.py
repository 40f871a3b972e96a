"""The replication-group reconciler, by concern; see reconciler.py."""

from controlplane.reconciler.replication_groups.failover import Observer, Transition
from controlplane.reconciler.replication_groups.reconciler import ReplicationGroupReconciler

__all__ = ["Observer", "ReplicationGroupReconciler", "Transition"]
