"""CreateSnapshot, DescribeSnapshots, CopySnapshot, DeleteSnapshot: validate, write the snapshot's
spec (with its source's configuration at this moment), enqueue; the reconciler has the engine
write the RDB file."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import cast

from controlplane.catalog import version_key
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.lookup import get_cluster, get_group
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.objectstore import ObjectStoreError, parse_s3_arn, valid_bucket
from controlplane.protocol.errors import ModelError
from controlplane.state import shapes
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey, RestoreSource, Tag
from controlplane.state.snapshots import Export, Snapshot, SnapshotSpec, cluster_config, replication_group_config
from controlplane.state.snapshots import restoring_from as snapshots_restoring

# AWS's quota: manual snapshots per node per rolling 24 hours.
MANUAL_SNAPSHOTS_PER_DAY = 20
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")
_EXPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


def snapshot_name(value: str, what: str = "SnapshotName") -> str:
    """A snapshot name: 1-255 letters, digits and hyphens, a letter first, no trailing hyphen
    and no two hyphens in a row (the `automatic.` prefix is AWS's own, for automatic backups)."""
    if not value or len(value) > 255 or not _NAME.match(value) or value.endswith("-") or "--" in value:
        raise v.invalid(f"Invalid {what}: {value!r}. It must begin with a letter, contain only ASCII letters, "
                        "digits and hyphens, not end with a hyphen or contain two consecutive hyphens, and be "
                        "at most 255 characters long.")
    return value


def get_snapshot(ctx: RequestContext, name: str) -> Snapshot:
    rec = ctx.services.store.get(ctx.key(Snapshot.KIND, name), Snapshot)
    if rec is None:
        raise e.SnapshotNotFoundFault(f"Snapshot {name} not found.")
    return rec


def restoring_from(ctx: RequestContext) -> set[str]:
    return snapshots_restoring(ctx.services.store, ctx.account, ctx.region)


def snapshot_shape(ctx: RequestContext, rec: Snapshot, show_node_groups: bool = False,
                   restoring: set[str] | None = None) -> m.Snapshot:
    status = rec.api_status()
    if status == "available" and rec.id in (restoring if restoring is not None else restoring_from(ctx)):
        status = "restoring"
    return cast(m.Snapshot, shapes.snapshot(rec, status, show_node_groups))


# ---- CreateSnapshot ---------------------------------------------------------------------------


def create_snapshot(ctx: RequestContext, params: m.CreateSnapshotMessage) -> m.CreateSnapshotResult:
    name = snapshot_name(params["SnapshotName"])
    cluster_id, group_id = params.get("CacheClusterId"), params.get("ReplicationGroupId")
    if bool(cluster_id) == bool(group_id):
        raise v.combination("Exactly one of CacheClusterId and ReplicationGroupId must be given.")
    tags = v.tag_records(params.get("Tags", []))
    spec = source_spec(ctx, cluster_id=cluster_id, group_id=group_id)
    spec.kms_key_id = params.get("KmsKeyId")
    rec = new_snapshot(ctx, name, spec, tags=tags)
    return {"Snapshot": snapshot_shape(ctx, rec)}


def source_spec(ctx: RequestContext, *, cluster_id: str | None, group_id: str | None,
                deleting: bool = False) -> SnapshotSpec:
    """A manual snapshot's spec of a cluster (a member's snapshot is its group's) or a group,
    after AWS's checks of the source: a Redis/Valkey cache, available (or, for a final snapshot,
    being deleted by this very request), within the daily quota."""
    if cluster_id:
        cluster = get_cluster(ctx, cluster_id)
        if cluster.spec.engine == "memcached":
            raise e.SnapshotFeatureNotSupportedFault("Snapshots are not supported for Memcached clusters.")
        if cluster.spec.replication_group_id:
            spec = source_spec(ctx, cluster_id=None, group_id=cluster.spec.replication_group_id, deleting=deleting)
            spec.cache_cluster_id = cluster.id  # the member to save from
            return spec
        _check_source(cluster, deleting)
        _quota(ctx, cluster)
        return SnapshotSpec(cache_cluster_id=cluster.id, config=cluster_config(cluster))
    assert group_id is not None
    group = get_group(ctx, group_id)
    _check_source(group, deleting)
    _quota(ctx, group)
    config = replication_group_config(group, members_of(ctx.services.store, group))
    return SnapshotSpec(replication_group_id=group.id, config=config)


def _check_source(rec: CacheCluster | ReplicationGroup, deleting: bool) -> None:
    status = rec.api_status()
    if status == "available" or (deleting and status in ("available", "snapshotting")):
        return
    what = "Cache cluster" if isinstance(rec, CacheCluster) else "Replication group"
    message = f"{what} {rec.id} is not in the available state (it is {status}): it cannot be snapshotted now."
    if isinstance(rec, CacheCluster):
        raise e.InvalidCacheClusterStateFault(message)
    raise e.InvalidReplicationGroupStateFault(message)


def _busy(rec: CacheCluster | ReplicationGroup) -> ModelError:
    message = f"{rec.id} is snapshotting; take the next snapshot once this one is done."
    if isinstance(rec, CacheCluster):
        return e.InvalidCacheClusterStateFault(message)
    return e.InvalidReplicationGroupStateFault(message)


def _quota(ctx: RequestContext, rec: CacheCluster | ReplicationGroup) -> None:
    since = ctx.services.clock.now() - timedelta(hours=24)
    if len([t for t in rec.spec.snapshot_calls if t > since]) >= MANUAL_SNAPSHOTS_PER_DAY:
        raise e.SnapshotQuotaExceededFault(
            f"{rec.id} has reached the quota of {MANUAL_SNAPSHOTS_PER_DAY} manual snapshots per node per 24 hours.")


def new_snapshot(ctx: RequestContext, name: str, spec: SnapshotSpec, *, tags: list[Tag] | None = None) -> Snapshot:
    """Store a new snapshot (and count it against its source's quota); enqueue it."""
    store = ctx.services.store
    now = ctx.services.clock.now()
    source_key = _source_key(ctx, spec)
    model: type[CacheCluster] | type[ReplicationGroup] = CacheCluster
    source = None
    if source_key is not None and not spec.copy_of:
        model = ReplicationGroup if source_key.kind == ReplicationGroup.KIND else CacheCluster
        source = store.get(source_key, model)
        if source is not None:
            # The source reads "snapshotting" from this call on, until the reconciler ends it.
            spec.source_seq = source.spec.snapshot_seq + 1
    rec = Snapshot(account=ctx.account, region=ctx.region, id=name, created_at=now, tags=tags or [], spec=spec)
    if not store.create(rec):
        raise e.SnapshotAlreadyExistsFault(f"Snapshot {name} already exists.")
    if source is not None:
        since = now - timedelta(hours=24)

        def count(r: CacheCluster | ReplicationGroup) -> None:
            # Checked again in the write itself: of two calls at once, one wins (AWS refuses the
            # second as the cache is snapshotting).
            if r.spec.snapshot_seq > r.status.snapshot_seq_done or r.status.snapshotting:
                raise _busy(r)
            r.spec.snapshot_calls = [t for t in r.spec.snapshot_calls if t > since] + [now]
            r.spec.snapshot_seq = max(r.spec.snapshot_seq, spec.source_seq)

        try:
            store.update(source.key, model, count)
        except ModelError:
            store.delete(rec.key)  # never enqueued: nothing acted on it yet
            raise
    ctx.services.enqueue(rec.key)
    return rec


def _source_key(ctx: RequestContext, spec: SnapshotSpec) -> ResourceKey | None:
    if spec.replication_group_id:
        return ctx.key(ReplicationGroup.KIND, spec.replication_group_id)
    if spec.cache_cluster_id:
        return ctx.key(CacheCluster.KIND, spec.cache_cluster_id)
    return None


# ---- DescribeSnapshots ------------------------------------------------------------------------


def describe_snapshots(ctx: RequestContext, params: m.DescribeSnapshotsMessage) -> m.DescribeSnapshotsListMessage:
    store = ctx.services.store
    cluster_id, group_id = params.get("CacheClusterId"), params.get("ReplicationGroupId")
    name, source = params.get("SnapshotName"), params.get("SnapshotSource")
    if cluster_id and group_id:
        raise v.combination("Only one of CacheClusterId and ReplicationGroupId may be given.")
    if source is not None and source not in ("automated", "manual"):
        raise v.invalid(f"Invalid SnapshotSource: {source}. Valid values: automated, manual.")
    records = [get_snapshot(ctx, name)] if name else store.records(Snapshot, ctx.account, ctx.region)
    if cluster_id:
        cid = cluster_id.lower()
        records = [r for r in records if r.spec.cache_cluster_id == cid]
        if not records and store.get(ctx.key(CacheCluster.KIND, cid), CacheCluster) is None:
            raise e.CacheClusterNotFoundFault(f"CacheCluster not found: {cluster_id}")
    if group_id:
        records = [r for r in records if r.spec.replication_group_id == group_id.lower()]
    if source:
        records = [r for r in records if r.spec.source == source]
    restoring = restoring_from(ctx)
    show = bool(params.get("ShowNodeGroupConfig"))
    return cast(m.DescribeSnapshotsListMessage, v.listing(
        "Snapshots", records, params, lambda r: snapshot_shape(ctx, r, show, restoring), store, default=50, high=50))


# ---- CopySnapshot -----------------------------------------------------------------------------


def copy_snapshot(ctx: RequestContext, params: m.CopySnapshotMessage) -> m.CopySnapshotResult:
    source = get_snapshot(ctx, params["SourceSnapshotName"])
    target = params["TargetSnapshotName"]
    bucket = params.get("TargetBucket")
    if source.api_status() != "available":
        raise e.InvalidSnapshotStateFault(
            f"Snapshot {source.id} is not in the available state (it is {source.api_status()}).")
    if bucket:
        return {"Snapshot": _export(ctx, source, bucket, target)}
    snapshot_name(target, "TargetSnapshotName")
    spec = source.spec.model_copy(deep=True)
    spec.source, spec.copy_of, spec.final, spec.exports = "manual", source.id, False, []
    spec.kms_key_id = params.get("KmsKeyId") or spec.kms_key_id
    rec = new_snapshot(ctx, target, spec, tags=v.tag_records(params.get("Tags", [])))
    return {"Snapshot": snapshot_shape(ctx, rec)}


def _export(ctx: RequestContext, source: Snapshot, bucket: str, target: str) -> m.Snapshot:
    """CopySnapshot with TargetBucket: the RDB goes to the bucket as `<target>.rdb`; the
    response is the source snapshot, which reads "exporting" until it is there."""
    if not valid_bucket(bucket):
        raise v.invalid(f"Invalid TargetBucket: {bucket}.")
    if not target or len(target) > 255 or not _EXPORT_NAME.match(target) or ".." in target.split("/"):
        raise v.invalid(f"Invalid TargetSnapshotName: {target!r}.")
    objects = ctx.services.objects
    key = f"{target}.rdb"
    try:
        if not objects.bucket_exists(bucket):
            raise v.invalid(f"The S3 bucket {bucket} does not exist.")
        if objects.object_exists(bucket, key):
            raise e.SnapshotAlreadyExistsFault(f"The S3 bucket {bucket} already holds {key}.")
    except ObjectStoreError as exc:
        raise v.invalid(f"The S3 bucket {bucket} cannot be reached: {exc}") from exc

    def add(r: Snapshot) -> None:
        seq = max([x.seq for x in r.spec.exports] + [r.status.exported_seq]) + 1
        r.spec.exports.append(Export(seq=seq, bucket=bucket, key=key))

    updated = ctx.services.store.update(source.key, Snapshot, add)
    if updated is None:
        raise e.SnapshotNotFoundFault(f"Snapshot {source.id} not found.")
    ctx.services.enqueue(source.key)
    return snapshot_shape(ctx, updated)


# ---- DeleteSnapshot ---------------------------------------------------------------------------


def delete_snapshot(ctx: RequestContext, params: m.DeleteSnapshotMessage) -> m.DeleteSnapshotResult:
    rec = get_snapshot(ctx, params["SnapshotName"])
    status = rec.api_status()
    if status == "available" and rec.id in restoring_from(ctx):
        status = "restoring"
    if status not in ("available", "failed"):
        raise e.InvalidSnapshotStateFault(f"Snapshot {rec.id} is {status}; it can be deleted once it is available.")
    updated = ctx.services.store.update(rec.key, Snapshot, _request_delete)
    if updated is None:  # deleted meanwhile (a prune, a reset)
        raise e.SnapshotNotFoundFault(f"Snapshot {rec.id} not found.")
    ctx.services.enqueue(rec.key)
    return {"Snapshot": snapshot_shape(ctx, updated)}


def _request_delete(r: Snapshot) -> None:
    r.spec.delete_requested = True
    r.generation += 1


HANDLERS: HandlerTable = {
    "CreateSnapshot": create_snapshot,
    "DescribeSnapshots": describe_snapshots,
    "CopySnapshot": copy_snapshot,
    "DeleteSnapshot": delete_snapshot,
}


# ---- restore and final snapshots (called by the cache-cluster and replication-group handlers) --


def restore_source(ctx: RequestContext, engine: str, version: str, name: str | None,
                   arns: list[str]) -> RestoreSource | None:
    """CreateCacheCluster/CreateReplicationGroup SnapshotName or SnapshotArns: what the first
    primary starts with (several files: a cluster-mode group's shards, see single_shard), checked
    now as AWS checks it (the data itself is checked when loaded)."""
    if name and arns:
        raise v.combination("Only one of SnapshotName and SnapshotArns may be given.")
    if name:
        snap = get_snapshot(ctx, name)
        if snap.api_status() not in ("available",) or snap.status.file is None:
            # InvalidSnapshotState is not among the errors the model gives the create calls.
            raise v.invalid(f"Snapshot {name} is not available (it is {snap.api_status()}).")
        if snap.spec.config.engine == "valkey" and engine == "redis":
            raise v.combination(f"Snapshot {name} is of a Valkey cache; it cannot be restored into Redis OSS.")
        if engine == snap.spec.config.engine and version_key(version)[:2] < version_key(
                snap.spec.config.engine_version)[:2]:
            raise v.combination(f"Snapshot {name} was taken on {engine} {snap.spec.config.engine_version}; it cannot "
                                f"be restored into the older {version}.")
        shards = [RestoreSource(snapshot=snap.id, file=n.file) for n in snap.status.nodes if n.file]
        return RestoreSource(snapshot=snap.id, file=snap.status.file, shards=shards if len(shards) > 1 else [])
    if not arns:
        return None
    parts = [_s3_part(ctx, arn) for arn in arns]
    first = parts[0]
    return RestoreSource(bucket=first.bucket, key=first.key, shards=parts if len(parts) > 1 else [])


def _s3_part(ctx: RequestContext, arn: str) -> RestoreSource:
    parsed = parse_s3_arn(arn)
    if parsed is None:
        raise v.invalid(f"Invalid SnapshotArns: {arn}. Expected arn:aws:s3:::bucket/key.rdb.")
    bucket, key = parsed
    try:
        found = ctx.services.objects.object_exists(bucket, key)
    except ObjectStoreError as exc:
        raise v.invalid(f"The RDB file {arn} cannot be read: {exc}") from exc
    if not found:
        raise v.invalid(f"No RDB file was found at {arn}.")
    return RestoreSource(bucket=bucket, key=key)


def single_shard(restore: RestoreSource | None) -> None:
    """A cache without cluster mode starts from one RDB file: a backup of several shards (their
    keys in slots of one keyspace) goes into a cluster-mode group, as AWS has it."""
    if restore is not None and restore.shards:
        what = f"snapshot {restore.snapshot} has" if restore.snapshot else "the SnapshotArns are"
        raise v.combination(f"The {what} {len(restore.shards)} shards: it can be restored only into a replication "
                            "group with cluster mode enabled.")


def final_snapshot(ctx: RequestContext, name: str, *, cluster_id: str | None = None,
                   group_id: str | None = None) -> str:
    """DeleteCacheCluster/DeleteReplicationGroup FinalSnapshotIdentifier: the snapshot is stored
    before the delete is (the reconciler deletes once it is available)."""
    snapshot_name(name, "FinalSnapshotIdentifier")
    spec = source_spec(ctx, cluster_id=cluster_id, group_id=group_id, deleting=True)
    spec.final = True
    new_snapshot(ctx, name, spec)
    return name
