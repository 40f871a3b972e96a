"""Event texts for planned node restarts, AWS's where AWS has one, and which binary runs a cache.

AWS's texts (the user guide's "Event Notifications and Amazon SNS" table, and the events AWS
writes for an engine upgrade, member by member: `Cache node 0001 shutdown`, `Cache node 0001
restarted`, `Cache cluster patched`). A planned restart never reads as a recovery: `Recovering
cache nodes` / `Finished recovery for cache nodes` are AWS's texts for a failed node replaced.
Which binary runs an engine version has no AWS text (AWS runs its own build): it is ours.
"""

from __future__ import annotations

from controlplane.catalog import aws_release

# Why a node was restarted on purpose (NodeStatus.planned).
PATCH = "patch"  # another engine version, or a service update
SCALE = "scale"  # another node type
MODIFY = "modify"  # another in-transit encryption mode
REBOOT = "reboot"  # RebootCacheCluster: its own texts

PATCHED = "Cache cluster patched"


def reason(node_type_changed: bool, version_changed: bool) -> str:
    """The reason recorded for a node restarted on purpose (a node type change first: it is
    the one with a completion text of its own)."""
    if node_type_changed:
        return SCALE
    return PATCH if version_changed else MODIFY


def shutdown(node_id: str) -> str:
    return f"Cache node {node_id} shutdown"


def restarted(node_id: str) -> str:
    return f"Cache node {node_id} restarted"


def scaled(node_type: str) -> str:
    """ElastiCache:CacheClusterScalingComplete / ReplicationGroupScalingComplete."""
    return f"Succeeded applying modification to cache node type to {node_type}."


def runs_as(engine: str, wanted: str, binary: str, exact: bool) -> str:
    """What really runs for the engine version a cache shows (AWS's release of its line)."""
    release = aws_release(engine, wanted)
    if exact:
        return f"Engine version {release} runs as {engine} {binary} on this machine"
    return f"Engine version {release} is not installed on this machine; the nodes run {engine} {binary}"
