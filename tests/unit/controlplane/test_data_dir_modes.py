"""The control plane's own files (the data directory, SQLite and its WAL, snapshots) are this
user's only, whatever the umask (the live test walks a directory with real nodes too)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_snapshots import settle


def loose_modes(root: Path) -> list[str]:
    """Everything under `root` (and root) that the group or others may read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if stat.S_IMODE(path.lstat().st_mode) & 0o077 and not path.is_symlink():
            found.append(f"{path.relative_to(root.parent)} {oct(stat.S_IMODE(path.lstat().st_mode))}")
    return found


@pytest.fixture
def permissive_world(tmp_path: Path) -> Iterator[World]:
    old = os.umask(0o022)
    try:
        w = World(tmp_path / "data")
        yield w
        w.service.store.close()
    finally:
        os.umask(old)


def test_the_data_directory_and_everything_in_it_is_private(permissive_world: World) -> None:
    w = permissive_world
    w.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    w.settle_until(lambda: w.call("DescribeCacheClusters")["CacheClusters"][0]["CacheClusterStatus"] == "available")
    w.call("CreateSnapshot", CacheClusterId="web", SnapshotName="bk")
    # The save runs on a job thread of its own: wait for it, not only for the loop (failed under load).
    settle(w, lambda: w.call("DescribeSnapshots", SnapshotName="bk")["Snapshots"][0]["SnapshotStatus"]
           == "available")
    names = {p.name for p in w.data_dir.rglob("*")}
    assert {"state.sqlite3", "state.sqlite3-wal", "bk.rdb"} <= names, names  # the walk saw the files
    assert loose_modes(w.data_dir) == []
