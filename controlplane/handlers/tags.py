"""AddTagsToResource, ListTagsForResource, RemoveTagsFromResource, by ARN."""

from __future__ import annotations

from collections.abc import Callable

from controlplane.handlers import validate as v
from controlplane.handlers.context import Handler, Params, RequestContext, Result
from controlplane.protocol.errors import ServiceError
from controlplane.state import shapes
from controlplane.state.arns import parse_arn
from controlplane.state.members import members_of
from controlplane.state.records import RECORD_TYPES, Record, ReplicationGroup, Tag

MAX_TAGS = 50
# The NotFound fault per resource kind, as the model names them.
_NOT_FOUND = {
    "cache-cluster": "CacheClusterNotFoundFault",
    "replication-group": "ReplicationGroupNotFoundFault",
    "snapshot": "SnapshotNotFoundFault",
    "cache-parameter-group": "CacheParameterGroupNotFoundFault",
    "cache-subnet-group": "CacheSubnetGroupNotFoundFault",
    "cache-security-group": "CacheSecurityGroupNotFoundFault",
    "user": "UserNotFoundFault",
    "user-group": "UserGroupNotFoundFault",
    "reserved-cache-node": "ReservedCacheNodeNotFoundFault",
    "serverless-cache": "ServerlessCacheNotFoundFault",
    "serverless-cache-snapshot": "ServerlessCacheSnapshotNotFoundFault",
}


def _resource(ctx: RequestContext, name: str) -> Record:
    parsed = parse_arn(name)
    if parsed is None:
        raise ServiceError("InvalidARNFault", f"The ARN {name} is not valid.")
    if parsed.region != ctx.region or parsed.account != ctx.account:
        raise ServiceError(_NOT_FOUND[parsed.kind], f"The resource {name} was not found.")
    model = RECORD_TYPES.get(parsed.kind)
    rec = ctx.services.store.get(ctx.key(parsed.kind, parsed.id), model) if model else None
    if rec is None:
        raise ServiceError(_NOT_FOUND[parsed.kind], f"The resource {name} was not found.")
    return rec


def list_tags_for_resource(ctx: RequestContext, params: Params) -> Result:
    rec = _resource(ctx, params["ResourceName"])
    return {"TagList": shapes.tags(rec.tags)}


def _taggable(ctx: RequestContext, name: str) -> list[Record]:
    """The resource, and for a replication group its member clusters too: AWS replicates tag
    changes on a group to all of its nodes."""
    rec = _resource(ctx, name)
    if isinstance(rec, ReplicationGroup):
        if rec.api_status() != "available":
            raise ServiceError("InvalidReplicationGroupStateFault",
                               "Cluster not in available state to perform tagging operations.")
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


def add_tags_to_resource(ctx: RequestContext, params: Params) -> Result:
    records = _taggable(ctx, params["ResourceName"])
    new: dict[str, str] = {}
    for item in params["Tags"]:
        if not item.get("Key"):
            raise v.invalid("Tag keys must not be empty.")
        new[item["Key"]] = item.get("Value") or ""

    def merge(tags: list[Tag]) -> list[Tag]:
        merged = {t.key: t.value for t in tags} | new
        if len(merged) > MAX_TAGS:
            raise ServiceError("TagQuotaPerResourceExceeded", f"A resource can have at most {MAX_TAGS} tags.")
        return [Tag(key=k, value=val) for k, val in merged.items()]

    merge(records[0].tags)  # refuse before anything is written
    return {"TagList": shapes.tags(_retag(ctx, records, merge).tags)}


def remove_tags_from_resource(ctx: RequestContext, params: Params) -> Result:
    records = _taggable(ctx, params["ResourceName"])
    keys = list(params["TagKeys"])
    present = {t.key for t in records[0].tags}
    missing = [k for k in keys if k not in present]
    if missing:
        raise ServiceError("TagNotFoundFault", f"Tag(s) not found on {params['ResourceName']}: {', '.join(missing)}")
    return {"TagList": shapes.tags(_retag(ctx, records, lambda tags: [t for t in tags if t.key not in keys]).tags)}


HANDLERS: dict[str, Handler] = {
    "AddTagsToResource": add_tags_to_resource,
    "ListTagsForResource": list_tags_for_resource,
    "RemoveTagsFromResource": remove_tags_from_resource,
}
