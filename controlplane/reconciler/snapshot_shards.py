"""Snapshots of cluster-mode groups: one RDB per node group, saved from a replica of the shard
where one serves (the primary otherwise), kept as DATA_DIR/snapshots/<account>/<region>/
<name>.shards/<node group>.rdb (a snapshot name has no dot: no other snapshot's file is there).
Copies copy every shard's file; exports upload `<target>-<node group>.rdb` per shard, as AWS
names them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from controlplane.reconciler.errors import TemporaryError
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.snapshots import NodeSnapshotStatus, Snapshot

WAIT = 0.5


@dataclass(frozen=True)
class Save:
    """One RDB to write: the member whose node writes it, its node group (cluster mode), where."""

    member: CacheCluster
    node_group: str | None
    dest: Path


def shards_dir(path: Path) -> Path:
    """Where a cluster-mode snapshot keeps its shards' files, beside the one-file path `path`."""
    return path.with_name(path.name.removesuffix(".rdb") + ".shards")


def shard_saves(rg: ReplicationGroup, members: list[CacheCluster], wanted: str | None, path: Path) -> list[Save]:
    """One save per node group: the member asked for if it is of that group, else a replica
    that serves, else the group's primary."""
    serving = [m for m in members if m.status.nodes and m.status.nodes[0].status == "available"]
    out = []
    for group in rg.spec.node_groups:
        own = [m for m in serving if m.spec.node_group_id == group.id]
        primary = rg.status.shard_primaries.get(group.id)
        chosen = next((m for m in own if m.id == wanted), None) or next(
            (m for m in own if m.id != primary), None) or next((m for m in own if m.id == primary), None)
        if chosen is None:
            raise TemporaryError(f"no member of node group {group.id} serves", delay=WAIT)
        out.append(Save(chosen, group.id, shards_dir(path) / f"{group.id}.rdb"))
    return out


def copy_shards(original: Snapshot, snapshots: Path, path: Path) -> list[tuple[Path, Path]]:
    """(source, destination) of each shard file a copy of `original` (kept at `path`) needs."""
    return [(snapshots / n.file, shards_dir(path) / Path(n.file).name) for n in original.status.nodes if n.file]


def copied_nodes(original: Snapshot, snapshots: Path, path: Path) -> list[NodeSnapshotStatus]:
    nodes = []
    for n in original.status.nodes:
        copy = n.model_copy()
        if n.file:
            copy.file = str((shards_dir(path) / Path(n.file).name).relative_to(snapshots))
        nodes.append(copy)
    return nodes


def export_files(rec: Snapshot, snapshots: Path, key: str) -> list[tuple[Path, str]]:
    """(file, object key) of each upload of an export to `key` (`<target>.rdb`): one per shard."""
    shards = [n for n in rec.status.nodes if n.file]
    if not shards:
        assert rec.status.file is not None
        return [(snapshots / rec.status.file, key)]
    stem = key.removesuffix(".rdb")
    return [(snapshots / n.file, f"{stem}-{n.node_group_id}.rdb") for n in shards if n.file]


def remove_shards(path: Path) -> None:
    shutil.rmtree(shards_dir(path), ignore_errors=True)
