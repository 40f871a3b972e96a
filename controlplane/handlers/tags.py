"""AddTagsToResource, ListTagsForResource, RemoveTagsFromResource, by ARN."""

from __future__ import annotations

from controlplane.handlers import validate as v
from controlplane.handlers.context import Handler, Params, RequestContext, Result
from controlplane.protocol.errors import ServiceError
from controlplane.state import shapes
from controlplane.state.arns import parse_arn
from controlplane.state.records import RECORD_TYPES, Record, Tag

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


def add_tags_to_resource(ctx: RequestContext, params: Params) -> Result:
    rec = _resource(ctx, params["ResourceName"])
    new: dict[str, str] = {}
    for item in params["Tags"]:
        if not item.get("Key"):
            raise v.invalid("Tag keys must not be empty.")
        new[item["Key"]] = item.get("Value") or ""
    merged = {t.key: t.value for t in rec.tags} | new
    if len(merged) > MAX_TAGS:
        raise ServiceError("TagQuotaPerResourceExceeded", f"A resource can have at most {MAX_TAGS} tags.")

    def change(r: Record) -> None:
        r.tags = [Tag(key=k, value=val) for k, val in merged.items()]

    updated = ctx.services.store.update(rec.key, type(rec), change)
    assert updated is not None
    return {"TagList": shapes.tags(updated.tags)}


def remove_tags_from_resource(ctx: RequestContext, params: Params) -> Result:
    rec = _resource(ctx, params["ResourceName"])
    keys = list(params["TagKeys"])
    present = {t.key for t in rec.tags}
    missing = [k for k in keys if k not in present]
    if missing:
        raise ServiceError("TagNotFoundFault", f"Tag(s) not found on {params['ResourceName']}: {', '.join(missing)}")

    def change(r: Record) -> None:
        r.tags = [t for t in r.tags if t.key not in keys]

    updated = ctx.services.store.update(rec.key, type(rec), change)
    assert updated is not None
    return {"TagList": shapes.tags(updated.tags)}


HANDLERS: dict[str, Handler] = {
    "AddTagsToResource": add_tags_to_resource,
    "ListTagsForResource": list_tags_for_resource,
    "RemoveTagsFromResource": remove_tags_from_resource,
}
