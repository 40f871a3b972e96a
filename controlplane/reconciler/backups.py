"""Automatic backups: one a day inside a cache's SnapshotWindow while SnapshotRetentionLimit > 0,
named as AWS names them (`automatic.<id>-YYYY-MM-DD-HH-MM`), pruned past the retention limit.

The scheduler acts as the service's own user here: it creates the backup's Snapshot record and
marks expired ones for deletion (spec writes by the control loop, the one other place besides a
group's RetainPrimaryCluster delete); everything else about them is the snapshot reconciler's.
Time is the injected clock, so the admin clock advance (and tests) watch windows fire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from controlplane.clock import Clock
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.snapshots import (
    Snapshot,
    SnapshotSpec,
    cluster_config,
    replication_group_config,
    restoring_from,
)
from controlplane.state.store import Store
from controlplane.windows import window_start

Source = CacheCluster | ReplicationGroup


def backup_name(source_id: str, when: datetime) -> str:
    return f"automatic.{source_id}-{when:%Y-%m-%d-%H-%M}"


class Backups:
    def __init__(self, store: Store, clock: Clock, enqueue: Callable[[ResourceKey], None]) -> None:
        self._store = store
        self._clock = clock
        self._enqueue = enqueue

    def tick(self, source: Source) -> None:
        """Called by the cache's reconcile at the end of a pass that found it available."""
        if source.spec.snapshot_retention_limit <= 0 or source.deleting():
            return
        if isinstance(source, CacheCluster) and (source.spec.engine == "memcached" or source.spec.replication_group_id):
            return
        now = self._clock.now()
        self._prune(source, now)
        window = source.spec.snapshot_window
        start = window_start(window, now) if window else None
        if start is None or (source.status.last_backup_at is not None and source.status.last_backup_at >= start):
            return
        if source.api_status() != "available":
            return  # a manual snapshot or a change runs: the next pass inside the window takes it
        self._take(source, now)

    def _take(self, source: Source, now: datetime) -> None:
        if isinstance(source, ReplicationGroup):
            spec = SnapshotSpec(source="automated", replication_group_id=source.id,
                                config=replication_group_config(source, members_of(self._store, source)))
            updated: Source | None = self._store.update(source.key, ReplicationGroup, _mark(now))
        else:
            spec = SnapshotSpec(source="automated", cache_cluster_id=source.id, config=cluster_config(source))
            updated = self._store.update(source.key, CacheCluster, _mark(now))
        if updated is None:
            return
        rec = Snapshot(account=source.account, region=source.region, id=backup_name(source.id, now),
                       created_at=now, spec=spec)
        if self._store.create(rec):
            self._enqueue(rec.key)

    def _prune(self, source: Source, now: datetime) -> None:
        """Keep the newest `retention` good automatic backups of the source, none older than that
        many days; a failed one goes once a newer good one exists (it never pushes a good one out).
        A backup a cache is being restored from stays until the restore is done."""
        keep = source.spec.snapshot_retention_limit
        own = sorted(self._own(source), key=lambda s: s.created_at, reverse=True)
        good = [s for s in own if s.status.phase == "available"]
        expired = good[keep:] + [s for s in good[:keep] if now - s.created_at > timedelta(days=keep, hours=1)]
        newest_good = good[0].created_at if good else None
        expired += [s for s in own if s.status.phase == "failed" and newest_good is not None
                    and s.created_at < newest_good]
        self._delete(source, expired)

    def forget(self, source: Source) -> None:
        """The cache is being deleted: its automatic backups go with it (its manual and final
        snapshots stay)."""
        self._delete(source, self._own(source))

    def _own(self, source: Source) -> list[Snapshot]:
        return [s for s in self._store.records(Snapshot, source.account, source.region)
                if s.spec.source == "automated" and not s.spec.delete_requested and _of(s, source)]

    def _delete(self, source: Source, snapshots: list[Snapshot]) -> None:
        restoring = restoring_from(self._store, source.account, source.region)
        for snap in snapshots:
            if snap.id in restoring:
                continue
            self._store.update(snap.key, Snapshot, _request_delete)
            self._enqueue(snap.key)


def _of(snap: Snapshot, source: Source) -> bool:
    if isinstance(source, ReplicationGroup):
        return snap.spec.replication_group_id == source.id
    return snap.spec.replication_group_id is None and snap.spec.cache_cluster_id == source.id


def _mark(now: datetime) -> Callable[[Source], None]:
    def change(r: Source) -> None:
        r.status.last_backup_at = now

    return change


def _request_delete(s: Snapshot) -> None:
    s.spec.delete_requested = True
    s.generation += 1
