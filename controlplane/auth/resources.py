"""What an IAM policy is asked about a request: the resources its operation acts on (their
ARNs, as controlplane.state.arns writes them) and the context keys its parameters give
(aws:RequestTag/<key>, aws:TagKeys).

An operation's resources are the ones it names: the resource of its own noun (CreateCacheCluster
the cluster, TestFailover the replication group, AddTagsToResource the ARN given), both
snapshots of a copy, every cache a batch lists. One that names none (a Describe of all) acts on
every resource of its kind in the caller's account and region, `arn:...:cluster:*`, as IAM
reports it; operations without a resource of their own (DescribeEvents) act on "*".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controlplane.state.arns import arn, parse_arn
from controlplane.state.kinds import RECORD_TYPES
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store

_RG = (("ReplicationGroupId", "replication-group"),)
# (a word of the operation's name, the members naming its resources with their kinds), most
# specific word first: the first word found in an operation's name decides.
_NOUNS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("ServerlessCacheSnapshot", (("SourceServerlessCacheSnapshotName", "serverless-cache-snapshot"),
                                 ("TargetServerlessCacheSnapshotName", "serverless-cache-snapshot"),
                                 ("ServerlessCacheSnapshotName", "serverless-cache-snapshot"))),
    ("ServerlessCache", (("ServerlessCacheName", "serverless-cache"),)),
    ("GlobalReplicationGroup", (("GlobalReplicationGroupId", "global-replication-group"),)),
    ("ReplicationGroup", _RG),
    ("ReplicaCount", _RG),
    ("Failover", _RG),
    ("Migration", (*_RG, ("ServerlessCacheName", "serverless-cache"))),
    ("CacheCluster", (("CacheClusterId", "cache-cluster"),)),
    ("Snapshot", (("SourceSnapshotName", "snapshot"), ("TargetSnapshotName", "snapshot"),
                  ("SnapshotName", "snapshot"))),
    ("CacheParameter", (("CacheParameterGroupName", "cache-parameter-group"),)),
    ("CacheSubnetGroup", (("CacheSubnetGroupName", "cache-subnet-group"),)),
    ("CacheSecurityGroup", (("CacheSecurityGroupName", "cache-security-group"),)),
    ("UserGroup", (("UserGroupId", "user-group"),)),
    ("User", (("UserId", "user"),)),
    ("ReservedCacheNode", (("ReservedCacheNodeId", "reserved-cache-node"),)),
    ("UpdateAction", (("ReplicationGroupIds", "replication-group"), ("CacheClusterIds", "cache-cluster"))),
    ("AllowedNodeTypeModifications", (("CacheClusterId", "cache-cluster"), *_RG)),
    ("Resource", (("ResourceName", "arn"),)),
)
_NOUN_OF: dict[str, tuple[tuple[str, str], ...]] = {}


def _members(operation: str) -> tuple[tuple[str, str], ...]:
    found = _NOUN_OF.get(operation)
    if found is None:
        found = next((members for word, members in _NOUNS if word in operation), ())
        _NOUN_OF[operation] = found
    return found


def _arn(kind: str, account: str, region: str, resource_id: str) -> str:
    if kind == "arn":
        return resource_id
    if kind == "global-replication-group":  # global: no region in its ARN
        return f"arn:aws:elasticache::{account}:globalreplicationgroup:{resource_id}"
    return arn(region, account, kind, resource_id)


def resources_of(operation: str, params: Mapping[str, Any], account: str, region: str) -> list[str]:
    """The ARNs the request acts on (at least one)."""
    members = _members(operation)
    if not members:
        return ["*"]
    found: list[str] = []
    for member, kind in members:
        value = params.get(member)
        for resource_id in value if isinstance(value, list) else [value]:
            if isinstance(resource_id, str) and resource_id:
                found.append(_arn(kind, account, region, resource_id))
    if found:
        return found
    kind = members[0][1]
    return ["*"] if kind == "arn" else [_arn(kind, account, region, "*")]


def request_tags(params: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The tags a request sets (aws:RequestTag/<key>) and the tag keys it names (aws:TagKeys)."""
    tags: dict[str, str] = {}
    for tag in params.get("Tags") or ():
        if isinstance(tag, Mapping) and isinstance(tag.get("Key"), str):
            tags[tag["Key"]] = str(tag.get("Value", ""))
    keys = list(tags) + [k for k in params.get("TagKeys") or () if isinstance(k, str)]
    return tags, keys


def store_tags(store: Store) -> Callable[[str], Mapping[str, str] | None]:
    """Tags of the resource an ARN names, from the store's in-memory mirror (None: no such
    resource here, or not one that has tags)."""

    def tags_of(resource: str) -> Mapping[str, str] | None:
        parsed = parse_arn(resource)
        model = RECORD_TYPES.get(parsed.kind) if parsed else None
        if parsed is None or model is None:
            return None
        record = store.get(ResourceKey(parsed.kind, parsed.account, parsed.region, parsed.id), model)
        return None if record is None else {t.key: t.value for t in record.tags}

    return tags_of


def lower_keys(tags: Mapping[str, str] | None) -> dict[str, Sequence[str]]:
    """Tags as condition-key lookups: IAM compares condition key names, tag keys too, ignoring case."""
    return {k.lower(): [v] for k, v in (tags or {}).items()}
