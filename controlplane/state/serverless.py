"""Serverless caches: one endpoint (and a reader endpoint) in front of nodes the service sizes
itself. For Redis and Valkey the nodes are the shards of a Redis Cluster behind keyroute
(engine/proxy/keyroute.c), which routes each key to its shard, so clients need no cluster
awareness; TLS is always on, as in AWS.

The shards are a cluster-mode replication group of the service's own, stored under a region no
request names (`backing_region`: the cache's region + ".serverless"), so no Describe, event or
tag of the user's region shows it, while the replication group reconciler builds it, watches
it, fails it over and replaces its nodes as for any other. The handlers write both specs (what
the user asked, and the group that serves it); the reconciler writes the status (the
endpoints, the shards, the phase it is in) and runs keyroute in front of the group."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from controlplane.state.records import Record

Phase = Literal["creating", "available", "modifying", "deleting", "create-failed"]

# AWS's serverless ports: the endpoint and the reader endpoint.
PORTS = {"redis": (6379, 6380), "valkey": (6379, 6380), "memcached": (11211, 11212)}
# The major versions AWS offers, the default one first, and the release each runs.
MAJOR_VERSIONS = {"valkey": ("8", "7"), "redis": ("7",), "memcached": ("1.6",)}
FULL_VERSIONS = {("valkey", "8"): "8.0", ("valkey", "7"): "7.2", ("redis", "7"): "7.1",
                 ("memcached", "1.6"): "1.6"}
# CacheUsageLimits bounds (AWS): data storage 1..5000 GB, 1000..15,000,000 ECPU per second.
STORAGE_GB = (1, 5000)
ECPU_PER_SECOND = (1000, 15_000_000)
MAX_CACHES = 40  # AWS's default quota of serverless caches per region
BACKING_SUFFIX = ".serverless"
# The node type of every shard's nodes (the storage limit is enforced as data, not by the type).
SHARD_NODE_TYPE = "cache.r7g.large"


def backing_region(region: str) -> str:
    """Where a serverless cache's replication group is stored (named like the cache)."""
    return region + BACKING_SUFFIX


class UsageLimits(BaseModel):
    storage_max_gb: int | None = None
    storage_min_gb: int | None = None
    ecpu_max: int | None = None
    ecpu_min: int | None = None


class ServerlessSpec(BaseModel):
    engine: str
    major_version: str
    description: str = ""
    limits: UsageLimits = Field(default_factory=UsageLimits)
    kms_key_id: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    subnet_ids: list[str] = Field(default_factory=list)
    user_group_id: str | None = None
    snapshot_retention_limit: int = 0
    daily_snapshot_time: str | None = None
    restore_from: list[str] = Field(default_factory=list)  # SnapshotArnsToRestore
    deleting: bool = False
    final_snapshot: str | None = None


class ServerlessStatus(BaseModel):
    phase: Phase = "creating"
    endpoint_host: str | None = None  # the reader endpoint is this address too, on the reader port
    shards: int = 0
    error: str | None = None


class ServerlessCache(Record):
    KIND: ClassVar[str] = "serverless-cache"

    spec: ServerlessSpec
    status: ServerlessStatus = Field(default_factory=ServerlessStatus)

    def api_status(self) -> str:
        if self.spec.deleting:
            return "deleting"
        if self.status.phase == "available" and self.generation != self.observed_generation:
            return "modifying"
        return self.status.phase

    def full_version(self) -> str:
        return FULL_VERSIONS.get((self.spec.engine, self.spec.major_version), self.spec.major_version)

    def ports(self) -> tuple[int, int]:
        return PORTS[self.spec.engine]
