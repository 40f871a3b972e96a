"""AddTagsToResource, ListTagsForResource, RemoveTagsFromResource, by ARN."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.rbac import ensure_default_user
from controlplane.handlers.subnet_groups import ensure_default_group
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.protocol.errors import ModelError
from controlplane.state import shapes
from controlplane.state.arns import REGIONLESS, parse_arn
from controlplane.state.kinds import RECORD_TYPES
from controlplane.state.members import members_of
from controlplane.state.records import Record, ReplicationGroup, ResourceKey, Tag
from controlplane.state.subnet_groups import DEFAULT_SUBNET_GROUP, CacheSubnetGroup
from controlplane.state.users import DEFAULT_USER_ID, User

# The NotFound fault per resource kind.
_NOT_FOUND: dict[str, type[ModelError]] = {
    "cache-cluster": e.CacheClusterNotFoundFault,
    "replication-group": e.ReplicationGroupNotFoundFault,
    "snapshot": e.SnapshotNotFoundFault,
    "cache-parameter-group": e.CacheParameterGroupNotFoundFault,
    "cache-subnet-group": e.CacheSubnetGroupNotFoundFault,
    "cache-security-group": e.CacheSecurityGroupNotFoundFault,
    "user": e.UserNotFoundFault,
    "user-group": e.UserGroupNotFoundFault,
    "reserved-cache-node": e.ReservedCacheNodeNotFoundFault,
    "serverless-cache": e.ServerlessCacheNotFoundFault,
    "serverless-cache-snapshot": e.ServerlessCacheSnapshotNotFoundFault,
    "global-replication-group": e.GlobalReplicationGroupNotFoundFault,
}


def _resource(ctx: RequestContext, name: str) -> Record:
    parsed = parse_arn(name)
    if parsed is None:
        raise e.InvalidARNFault(f"The ARN {name} is not valid.")
    regionless = parsed.kind in REGIONLESS  # a global datastore: found from every region
    if (parsed.region != ctx.region and not regionless) or parsed.account != ctx.account:
        raise _NOT_FOUND[parsed.kind](f"The resource {name} was not found.")
    if parsed.kind == User.KIND and parsed.id == DEFAULT_USER_ID:
        ensure_default_user(ctx)  # the built-in user exists before anyone asked for it
    if parsed.kind == CacheSubnetGroup.KIND and parsed.id == DEFAULT_SUBNET_GROUP:
        ensure_default_group(ctx)
    model = RECORD_TYPES.get(parsed.kind)
    key = ResourceKey(parsed.kind, ctx.account, parsed.region if regionless else ctx.region, parsed.id)
    rec = ctx.services.store.get(key, model) if model else None
    if rec is None:
        raise _NOT_FOUND[parsed.kind](f"The resource {name} was not found.")
    return rec


def _tag_list(tags: list[Tag]) -> m.TagListMessage:
    return {"TagList": cast(list[m.Tag], shapes.tags(tags))}


def list_tags_for_resource(ctx: RequestContext, params: m.ListTagsForResourceMessage) -> m.TagListMessage:
    return _tag_list(_resource(ctx, params["ResourceName"]).tags)


def _taggable(ctx: RequestContext, name: str) -> list[Record]:
    """The resource, and for a replication group its member clusters too: AWS replicates tag
    changes on a group to all of its nodes."""
    rec = _resource(ctx, name)
    if isinstance(rec, ReplicationGroup):
        if rec.api_status() != "available":
            raise e.InvalidReplicationGroupStateFault("Cluster not in available state to perform tagging operations.")
        return [rec, *members_of(ctx.services.store, rec)]
    return [rec]


def _retag(ctx: RequestContext, records: list[Record], change: Callable[[list[Tag]], list[Tag]]) -> Record:
    """Apply a tag change to each record's current tags, inside the store's update (no lost
    update between a read and a write)."""
    out: Record | None = None
    for rec in records:
        def apply(r: Record) -> None:
            r.tags = change(r.tags)

        updated = ctx.services.store.update(rec.key, type(rec), apply)
        out = out or updated
    assert out is not None
    return out


def add_tags_to_resource(ctx: RequestContext, params: m.AddTagsToResourceMessage) -> m.TagListMessage:
    records = _taggable(ctx, params["ResourceName"])
    new = v.tags(params["Tags"])

    def merge(tags: list[Tag]) -> list[Tag]:
        merged = {t.key: t.value for t in tags} | new
        v.tag_quota(len(merged))
        return [Tag(key=k, value=val) for k, val in merged.items()]

    merge(records[0].tags)  # refuse before anything is written
    return _tag_list(_retag(ctx, records, merge).tags)


def remove_tags_from_resource(ctx: RequestContext, params: m.RemoveTagsFromResourceMessage) -> m.TagListMessage:
    records = _taggable(ctx, params["ResourceName"])
    keys = list(params["TagKeys"])
    present = {t.key for t in records[0].tags}
    missing = [k for k in keys if k not in present]
    if missing:
        raise e.TagNotFoundFault(f"Tag(s) not found on {params['ResourceName']}: {', '.join(missing)}")
    return _tag_list(_retag(ctx, records, lambda tags: [t for t in tags if t.key not in keys]).tags)


HANDLERS: HandlerTable = {
    "AddTagsToResource": add_tags_to_resource,
    "ListTagsForResource": list_tags_for_resource,
    "RemoveTagsFromResource": remove_tags_from_resource,
}
