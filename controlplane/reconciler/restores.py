"""Restores: the RDB file a cache's first primary node is started with (CreateCacheCluster /
CreateReplicationGroup with SnapshotName or SnapshotArns).

A snapshot's file is used where it lies (the runtime links or copies it into the node's data, it
never changes it); an S3 object is downloaded once under DATA_DIR/restores. Either is checked
(an RDB, complete) before any node starts with it; a file that fails the check, or a node that
exits while loading it (redis-server verifies the checksum and refuses a corrupt file), makes
the cache `restore-failed`: never a node serving an empty dataset as if restored."""

from __future__ import annotations

from pathlib import Path

from controlplane.objectstore import ObjectStore, ObjectStoreError
from controlplane.reconciler.errors import PermanentError
from controlplane.state.records import RestoreSource
from engine import RdbError, check_rdb


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
            path = self._restores / f"{owner}.rdb"
            if not path.is_file():
                self._download(source, path)
        try:
            check_rdb(path)
        except RdbError as exc:
            raise RestoreFailed(f"the RDB file of {source.describe()} cannot be restored: {exc}") from exc
        return str(path)

    def done(self, owner: str) -> None:
        """The restore is loaded: a downloaded file is not needed any more."""
        (self._restores / f"{owner}.rdb").unlink(missing_ok=True)

    def _download(self, source: RestoreSource, path: Path) -> None:
        assert source.bucket is not None and source.key is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            self._objects.download(source.bucket, source.key, partial)
            partial.replace(path)
        except (ObjectStoreError, OSError) as exc:
            raise RestoreFailed(f"the RDB file of {source.describe()} cannot be read: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
