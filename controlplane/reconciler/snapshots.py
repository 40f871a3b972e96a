"""Reconcile a snapshot: the engine writes its RDB (a replica-side save from the node chosen: a
replica of a group where there is one), the file is kept under DATA_DIR/snapshots, outside every
node's directory; copies copy the file, exports upload it, deletes remove it.

The source reads "snapshotting" while its save runs (status.snapshotting, written here), and its
changing calls are refused meanwhile (the handlers check the source's status)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

from controlplane.clock import Clock
from controlplane.objectstore import ObjectStore
from controlplane.reconciler.errors import PermanentError, Requeue, TemporaryError
from controlplane.reconciler.infra import Infra, node_name
from controlplane.reconciler.jobs import Jobs
from controlplane.reconciler.snapshot_shards import (
    Save,
    copied_nodes,
    copy_shards,
    export_files,
    remove_shards,
    shard_saves,
)
from controlplane.state.events import EventLog
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.snapshots import NodeSnapshotStatus, Snapshot, SnapshotStatus
from controlplane.state.store import Store
from engine import copy_private, private_dir

log = logging.getLogger("elasticache_local.reconciler")

NODE_ID = "0001"
WAIT = 0.5  # seconds until a snapshot waiting for its source looks again
SAFETY = 1.0  # a running job enqueues its key when it ends; this requeue is only a safety net
AUTOMATED_ATTEMPTS = 3  # an automatic backup that fails is retried, then reported failed
RETRY_AFTER = 30.0  # seconds (service clock) between those attempts

Source = CacheCluster | ReplicationGroup


class SnapshotReconciler:
    kind = Snapshot.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog, clock: Clock,
                 enqueue: Callable[[ResourceKey], None], jobs: Jobs, *, snapshots_dir: Path,
                 objects: ObjectStore, save_timeout: float) -> None:
        self._store = store
        self._infra = infra
        self._events = events
        self._clock = clock
        self._enqueue = enqueue
        self._jobs = jobs
        self._dir = snapshots_dir
        self._objects = objects
        self._save_timeout = save_timeout

    def startup(self) -> None:
        private_dir(self._dir)

    def path(self, rec: Snapshot) -> Path:
        return self._dir / rec.account / rec.region / f"{rec.id}.rdb"

    def reconcile(self, key: ResourceKey) -> None:
        rec = self._store.get(key, Snapshot)
        if rec is None:
            return
        if rec.spec.delete_requested:
            self._delete(rec)
        elif rec.status.phase in (None, "creating", "copying"):
            if rec.spec.copy_of:
                self._copy(rec)
            else:
                self._save(rec)
        else:
            source = None if rec.spec.copy_of else self._source(rec)
            if source is not None:
                self._release_if_held(rec, source)  # a pass that ended between its two writes
            if rec.status.phase == "available":
                self._export(rec)

    def fail(self, key: ResourceKey, message: str) -> None:
        rec = self._store.get(key, Snapshot)
        if rec is not None and rec.status.phase != "failed":
            self._failed(rec, message)

    # ---- create ---------------------------------------------------------------------------

    def _save(self, rec: Snapshot) -> None:
        source = self._source(rec)
        if source is None:
            raise PermanentError("its cache was deleted before the snapshot was taken")
        job = self._jobs.take(rec.key, "save")
        if job is not None:
            error = job.exception()
            if error is not None:
                self._save_failed(rec, source, str(error))
                return
            self._saved(rec, source, job.result())
            return
        if self._jobs.running(rec.key):
            raise Requeue("the save runs", delay=SAFETY)
        retry_at = rec.status.retry_at
        if retry_at is not None and self._clock.now() < retry_at:
            raise Requeue("a failed automatic backup waits for its retry",
                          delay=(retry_at - self._clock.now()).total_seconds())
        if not self._ready(rec, source):
            raise Requeue(f"{source.id} is not ready to be snapshotted", delay=WAIT)
        if not self._claim(rec, source):
            raise Requeue(f"another snapshot of {source.id} runs", delay=WAIT)
        if isinstance(source, ReplicationGroup) and source.cluster_enabled:
            saves = shard_saves(source, members_of(self._store, source), rec.spec.cache_cluster_id, self.path(rec))
        else:
            saves = [Save(self._node_to_save(rec, source), None, self.path(rec))]
        for item in saves:
            if item.member is not source:  # a group's member reads "snapshotting" too while its node saves
                self._store.update(item.member.key, CacheCluster, partial(_hold, name=rec.id))
        if rec.status.phase is None:
            self._write(rec, _started(self._clock))
        runtime, timeout = self._infra.runtime, self._save_timeout

        def save() -> list[tuple[Save, int]]:
            done = []
            for item in saves:
                private_dir(item.dest.parent)
                name = node_name(rec.account, rec.region, item.member.id, NODE_ID)
                done.append((item, runtime.save_rdb(name, item.dest, timeout)))
            return done

        self._jobs.submit(rec.key, "save", save)
        raise Requeue("the save runs", delay=SAFETY)

    def _source(self, rec: Snapshot) -> Source | None:
        if rec.spec.replication_group_id:
            return self._store.get(self._key(rec, ReplicationGroup.KIND, rec.spec.replication_group_id),
                                   ReplicationGroup)
        assert rec.spec.cache_cluster_id is not None
        return self._store.get(self._key(rec, CacheCluster.KIND, rec.spec.cache_cluster_id), CacheCluster)

    def _ready(self, rec: Snapshot, source: Source) -> bool:
        """The source's nodes serve and nothing else changes them (a final snapshot's source is
        being deleted by the very request that asked for it)."""
        if source.status.phase != "available":
            return False
        if source.deleting() and not rec.spec.final:
            return False
        return not (isinstance(source, ReplicationGroup) and source.status.failover is not None)

    def _claim(self, rec: Snapshot, source: Source) -> bool:
        """One save per cache at a time: the source says which snapshot runs."""
        if source.status.snapshotting == rec.id:
            return True
        if source.status.snapshotting is not None:
            held = self._store.get(self._key(rec, Snapshot.KIND, source.status.snapshotting), Snapshot)
            if held is not None and held.status.phase in (None, "creating"):
                return False
        won: list[bool] = []

        def claim(r: Source) -> None:  # compare-and-set: two workers never both win
            won.append(r.status.snapshotting in (None, source.status.snapshotting))
            if won[-1]:
                r.status.snapshotting = rec.id

        self._update_source(source, claim)
        return bool(won and won[-1])

    def _node_to_save(self, rec: Snapshot, source: Source) -> CacheCluster:
        """A cluster's node; in a group, the member asked for (CreateSnapshot CacheClusterId, else
        SnapshottingClusterId) if it serves, else a replica, else the primary."""
        if isinstance(source, CacheCluster):
            return source
        members = [m for m in members_of(self._store, source)
                   if m.status.nodes and m.status.nodes[0].status == "available"]
        if not members:
            raise TemporaryError(f"no member of {source.id} serves", delay=WAIT)
        for wanted in (rec.spec.cache_cluster_id, source.spec.snapshotting_cluster_id):
            chosen = next((m for m in members if m.id == wanted), None)
            if chosen is not None:
                return chosen
        replicas = [m for m in members if m.id != source.status.primary]
        return replicas[0] if replicas else members[0]

    def _saved(self, rec: Snapshot, source: Source, saved: list[tuple[Save, int]]) -> None:
        now = self._clock.now()
        entries = []
        for item, size in saved:
            member = item.member
            node = member.status.nodes[0] if member.status.nodes else None
            entries.append(NodeSnapshotStatus(
                cache_cluster_id=member.id, node_group_id=item.node_group or ("0001" if member is not source else None),
                cache_node_id=node.node_id if node else NODE_ID, size=size, created_at=now,
                node_created_at=node.created_at if node else None,
                file=str(item.dest.relative_to(self._dir)) if item.node_group else None))
        relative = entries[0].file or str(self.path(rec).relative_to(self._dir))

        def done(s: SnapshotStatus) -> None:
            s.phase, s.file, s.nodes, s.failure = "available", relative, entries, None

        self._write(rec, done)
        self._release(rec, source)
        self._emit_result(rec, source, "succeeded")

    def _save_failed(self, rec: Snapshot, source: Source, message: str) -> None:
        self.path(rec).unlink(missing_ok=True)
        remove_shards(self.path(rec))
        if rec.spec.source == "automated" and rec.status.attempts + 1 < AUTOMATED_ATTEMPTS:
            retry_at = self._clock.now() + timedelta(seconds=RETRY_AFTER)

            def again(s: SnapshotStatus) -> None:
                s.attempts, s.retry_at = s.attempts + 1, retry_at

            self._write(rec, again)
            self._release(rec, source, ended=False)
            self._emit_result(rec, source, "failed")
            self._events.emit(rec.account, rec.region, *self._event_source(rec),
                              f"Automatic backup {rec.id} failed ({message}); it is retried at {retry_at:%H:%M:%S} UTC")
            raise Requeue("a failed automatic backup waits for its retry", delay=RETRY_AFTER)
        self._failed(rec, message)

    def _failed(self, rec: Snapshot, message: str) -> None:
        def failed(s: SnapshotStatus) -> None:
            s.phase, s.failure = "failed", message

        self._write(rec, failed)
        source = self._source(rec) if not rec.spec.copy_of else None
        if source is not None:
            self._release(rec, source)
        self._emit_result(rec, source, "failed")
        self._events.emit(rec.account, rec.region, *self._event_source(rec), f"Snapshot {rec.id} failed: {message}")

    def _release(self, rec: Snapshot, source: Source, *, ended: bool = True) -> None:
        def change(r: Source) -> None:
            if r.status.snapshotting == rec.id:
                r.status.snapshotting = None
            if ended:
                r.status.snapshot_seq_done = max(r.status.snapshot_seq_done, rec.spec.source_seq)

        self._update_source(source, change)
        if isinstance(source, ReplicationGroup):
            for m in members_of(self._store, source):
                if m.status.snapshotting == rec.id:
                    self._store.update(m.key, CacheCluster, partial(_hold, name=None))
        self._enqueue(source.key)  # a final snapshot's delete, or changes held back, go on

    def _release_if_held(self, rec: Snapshot, source: Source) -> None:
        if _holds(rec, source) and rec.status.phase in ("available", "failed", None) and not self._jobs.running(
                rec.key):
            self._release(rec, source)

    def _emit_result(self, rec: Snapshot, source: Source | None, result: str) -> None:
        if isinstance(source, ReplicationGroup) or rec.spec.replication_group_id:
            kind, what, sid = "replication-group", "replication group", rec.spec.replication_group_id
        else:
            kind, what, sid = "cache-cluster", "cache cluster", rec.spec.cache_cluster_id
        message = f"Snapshot {result} for snapshot with ID '{rec.id}' of {what} with ID '{sid}'"  # AWS's words
        self._events.emit(rec.account, rec.region, kind, sid or rec.id, message)

    # ---- copy, export, delete -------------------------------------------------------------

    def _copy(self, rec: Snapshot) -> None:
        assert rec.spec.copy_of is not None
        original = self._store.get(self._key(rec, Snapshot.KIND, rec.spec.copy_of), Snapshot)
        job = self._jobs.take(rec.key, "copy")
        if job is not None:
            if job.exception() is not None:
                raise PermanentError(f"the copy of {rec.spec.copy_of} failed: {job.exception()}")
            nodes = copied_nodes(original, self._dir, self.path(rec)) if original is not None else []
            relative = nodes[0].file if nodes and nodes[0].file else str(self.path(rec).relative_to(self._dir))

            def done(s: SnapshotStatus) -> None:
                s.phase, s.file, s.nodes = "available", relative, nodes

            self._write(rec, done)
            return
        if self._jobs.running(rec.key):
            raise Requeue("the copy runs", delay=SAFETY)
        if original is None or original.status.file is None:
            raise PermanentError(f"snapshot {rec.spec.copy_of} is gone")
        if rec.status.phase is None:
            self._write(rec, lambda s: setattr(s, "phase", "copying"))
        files = copy_shards(original, self._dir, self.path(rec)) or [(self._dir / original.status.file, self.path(rec))]

        def copy() -> None:
            for source, dest in files:
                _copy_file(source, dest)

        self._jobs.submit(rec.key, "copy", copy)
        raise Requeue("the copy runs", delay=SAFETY)

    def _export(self, rec: Snapshot) -> None:
        pending = [x for x in rec.spec.exports if x.seq > rec.status.exported_seq]
        if not pending or rec.status.file is None:
            return
        export = pending[0]
        job = self._jobs.take(rec.key, f"export-{export.seq}")
        if job is None:
            if not self._jobs.running(rec.key):
                uploads, objects = export_files(rec, self._dir, export.key), self._objects

                def upload() -> None:
                    for source, key in uploads:
                        objects.upload(source, export.bucket, key)

                self._jobs.submit(rec.key, f"export-{export.seq}", upload)
            raise Requeue("the export runs", delay=SAFETY)
        error = job.exception()

        def done(s: SnapshotStatus) -> None:
            s.exported_seq = export.seq
            s.export_failure = str(error) if error is not None else None

        self._write(rec, done)
        target = f"s3://{export.bucket}/{export.key}"
        message = (f"Snapshot {rec.id} exported to {target}" if error is None
                   else f"Export of snapshot {rec.id} to {target} failed: {error}")
        self._events.emit(rec.account, rec.region, *self._event_source(rec), message)
        if len(pending) > 1:
            self._enqueue(rec.key)

    def _delete(self, rec: Snapshot) -> None:
        if self._jobs.running(rec.key):
            raise Requeue("a job of the snapshot runs", delay=SAFETY)
        self.path(rec).unlink(missing_ok=True)
        remove_shards(self.path(rec))
        if not rec.spec.copy_of:
            source = self._source(rec)
            if source is not None and _holds(rec, source):
                self._release(rec, source)
        self._jobs.forget(rec.key)
        self._store.delete(rec.key)

    # ---- helpers --------------------------------------------------------------------------

    def _event_source(self, rec: Snapshot) -> tuple[str, str]:
        if rec.spec.replication_group_id:
            return "replication-group", rec.spec.replication_group_id
        return "cache-cluster", rec.spec.cache_cluster_id or rec.id

    def _key(self, rec: Snapshot, kind: str, rid: str) -> ResourceKey:
        return ResourceKey(kind, rec.account, rec.region, rid)

    def _write(self, rec: Snapshot, change: Callable[[SnapshotStatus], None]) -> Snapshot:
        def apply(r: Snapshot) -> None:
            change(r.status)

        updated = self._store.update(rec.key, Snapshot, apply)
        if updated is None:
            raise TemporaryError("snapshot record vanished")
        return updated

    def _update_source(self, source: Source, change: Callable[[Source], None]) -> Source | None:
        if isinstance(source, ReplicationGroup):
            return self._store.update(source.key, ReplicationGroup, change)
        return self._store.update(source.key, CacheCluster, change)


def _holds(rec: Snapshot, source: Source) -> bool:
    """Whether the source still reads "snapshotting" because of this snapshot."""
    return source.status.snapshotting == rec.id or source.status.snapshot_seq_done < rec.spec.source_seq


def _hold(c: CacheCluster, name: str | None) -> None:
    c.status.snapshotting = name


def _started(clock: Clock) -> Callable[[SnapshotStatus], None]:
    def change(s: SnapshotStatus) -> None:
        s.phase, s.started_at = "creating", clock.now()

    return change


def _copy_file(source: Path, dest: Path) -> None:
    private_dir(dest.parent)
    partial = dest.with_name(dest.name + ".partial")
    try:
        copy_private(source, partial)
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
