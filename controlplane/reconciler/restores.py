"""Restores: the RDB file a cache's first primary node is started with (CreateCacheCluster /
CreateReplicationGroup with SnapshotName or SnapshotArns).

A snapshot's file is used where it lies (the runtime links or copies it into the node's data, it
never changes it); an S3 object is downloaded once under DATA_DIR/restores. Either is checked
(an RDB, complete) before any node starts with it; a file that fails the check, or a node that
exits while loading it (redis-server verifies the checksum and refuses a corrupt file), makes
the cache `restore-failed`: never a node serving an empty dataset as if restored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from controlplane.objectstore import ObjectStore, ObjectStoreError
from controlplane.reconciler.errors import PermanentError, Requeue, TemporaryError
from controlplane.state.events import EventLog
from controlplane.state.records import CacheCluster, CacheClusterStatus, ReplicationGroup, ResourceKey, RestoreSource
from controlplane.state.snapshots import Snapshot
from controlplane.state.store import Store
from engine import NodeConfig, RdbError, check_rdb, make_private, private_dir


class RestoreFailed(PermanentError):
    """The restore cannot be done: the message says why (it goes to the cache's events)."""


class Restores:
    def __init__(self, snapshots_dir: Path, restores_dir: Path, objects: ObjectStore) -> None:
        self._snapshots = snapshots_dir
        self._restores = restores_dir
        self._objects = objects

    def seed(self, owner: str, source: RestoreSource) -> str:
        """The checked RDB file to start `owner`'s first primary with (a path for NodeConfig.seed)."""
        if source.file is not None:
            path = self._snapshots / source.file
        else:
            assert source.bucket is not None and source.key is not None
            path = self._download_path(owner)
            if not path.is_file():
                self._download(source, path)
        try:
            check_rdb(path)
        except RdbError as exc:
            raise RestoreFailed(f"the RDB file of {source.describe()} cannot be restored: {exc}") from exc
        return str(path)

    def done(self, owner: str) -> None:
        """The restore is over (loaded, or failed): a downloaded file is not used again."""
        self._download_path(owner).unlink(missing_ok=True)

    def _download_path(self, owner: str) -> Path:
        return self._restores / f"{owner}.rdb"

    def _download(self, source: RestoreSource, path: Path) -> None:
        assert source.bucket is not None and source.key is not None
        private_dir(path.parent)
        partial = path.with_name(path.name + ".partial")
        try:
            self._objects.download(source.bucket, source.key, partial)
            make_private(partial)  # boto3 writes a file of its own and renames it here
            partial.replace(path)
        except (ObjectStoreError, OSError) as exc:
            raise RestoreFailed(f"the RDB file of {source.describe()} cannot be read: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)


def owner(rec: CacheCluster | ReplicationGroup) -> str:
    """A file-name-safe name of the cache a download is for."""
    return str(rec.key).replace("/", "-")


class ClusterRestore:
    """A standalone cluster created from a snapshot: its node starts with the file, once."""

    def __init__(self, store: Store, events: EventLog, restores: Restores,
                 discard: Callable[[CacheCluster], None]) -> None:
        self._store = store
        self._events = events
        self._restores = restores
        self._discard = discard

    def pending(self, rec: CacheCluster) -> bool:
        return rec.spec.restore is not None and not rec.status.restored

    def check_not_crashed(self, rec: CacheCluster) -> None:
        """A node that was started with the file and is not running any more could not load it
        (redis-server exits on a bad checksum): the restore failed; it is not started again."""
        if self.pending(rec) and rec.status.restore_started:
            self.failed(rec, "the node exited while loading the RDB file (it is corrupt, or the data does not fit "
                             "the node type)")

    def seeded(self, rec: CacheCluster, config: NodeConfig) -> NodeConfig:
        assert rec.spec.restore is not None
        try:
            seed = self._restores.seed(owner(rec), rec.spec.restore)
        except RestoreFailed as exc:
            self.failed(rec, str(exc))
        return replace(config, seed=seed)

    def started(self, rec: CacheCluster) -> CacheCluster:
        return self._write(rec, lambda s: setattr(s, "restore_started", True))

    def loaded(self, rec: CacheCluster) -> CacheCluster:
        source = rec.spec.restore
        assert source is not None
        self._restores.done(owner(rec))
        rec = self._write(rec, lambda s: setattr(s, "restored", True))
        self._events.emit(rec.account, rec.region, "cache-cluster", rec.id,
                          f"Restored cache cluster {rec.id} from {source.describe()}")
        return rec

    def failed(self, rec: CacheCluster, message: str) -> NoReturn:
        self._discard(rec)
        self._restores.done(owner(rec))  # a download that failed is not used again

        def change(s: CacheClusterStatus) -> None:
            s.phase, s.failure = "restore-failed", message
            for n in s.nodes:
                n.status = "creating"

        self._write(rec, change)
        self._events.emit(rec.account, rec.region, "cache-cluster", rec.id,
                          f"Restore failed for cache cluster {rec.id}: {message}")
        raise RestoreFailed(message)

    def _write(self, rec: CacheCluster, change: Callable[[CacheClusterStatus], None]) -> CacheCluster:
        def apply(r: CacheCluster) -> None:
            change(r.status)

        updated = self._store.update(rec.key, CacheCluster, apply)
        if updated is None:
            raise TemporaryError("cluster record vanished")
        return updated


def final_snapshot_failure(store: Store, rec: CacheCluster | ReplicationGroup) -> str | None:
    """A delete with FinalSnapshotIdentifier: None when the delete may go on (no final snapshot,
    or it is available), a Requeue while it is being taken, the reason when it failed."""
    name = rec.spec.final_snapshot
    if name is None:
        return None
    snap = store.get(ResourceKey(Snapshot.KIND, rec.account, rec.region, name), Snapshot)
    if snap is not None and snap.status.phase == "available":
        return None
    if snap is not None and snap.status.phase != "failed":
        raise Requeue(f"the final snapshot {name} is being taken", delay=0.2)
    return (snap.status.failure or "unknown") if snap is not None else "it was deleted"
