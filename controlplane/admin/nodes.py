"""Cache nodes on the JSON API: what DescribeCacheClusters says of each node, plus what only the
nodes themselves know: their role, health (the health monitor's verdict), replication offset and
lag, memory, clients and ops/s.

The engines' counters are read through the runtime (`NodeRuntime.stats`: INFO, memcached's
`stats`) on a small thread pool, never on the event loop, and kept for `max_age` seconds: a storm
of page refreshes reads each node at most once a second, and concurrent requests for a node share
one reading."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from controlplane.admin.base import ACCOUNT, ERRORS, REGION, AwsErrorRoute, context_for, service_of
from controlplane.handlers.cache_clusters import describe_cache_clusters
from controlplane.handlers.context import RequestContext
from controlplane.handlers.replication_groups import describe_replication_groups
from controlplane.model import messages as m
from controlplane.reconciler.infra import node_name
from engine import NodeRuntime

ROLES: dict[str, Literal["primary", "replica"]] = {"master": "primary", "slave": "replica"}
# memcached's request counters; their growth between two readings is its ops/s.
_MEMCACHED_OPS = ("cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "delete_hits", "delete_misses", "incr_hits",
                  "incr_misses", "decr_hits", "decr_misses")


@dataclass(frozen=True)
class Reading:
    fields: Mapping[str, str]  # empty: the node did not answer
    at: float  # monotonic
    ops_per_second: float | None


class NodeStats:
    """Readings of the nodes' own counters, at most one per node per `max_age` seconds."""

    def __init__(self, runtime: NodeRuntime, *, max_age: float = 1.0, timeout: float = 0.25, workers: int = 4,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self.max_age = max_age
        self._timeout = timeout
        self._workers = workers
        self._now = monotonic
        self._lock = threading.Lock()
        self._readings: dict[str, Reading] = {}
        self._pending: dict[str, Future[None]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def read(self, names: Sequence[str]) -> dict[str, Reading]:
        """A reading of each node no older than max_age (a node that did not answer: empty fields)."""
        now = self._now()
        waiting: list[Future[None]] = []
        with self._lock:
            if self._closed:
                return {}
            for name in names:
                reading = self._readings.get(name)
                if reading is not None and now - reading.at < self.max_age:
                    continue
                future = self._pending.get(name)
                if future is None:
                    if self._pool is None:
                        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="node-stats")
                    future = self._pool.submit(self._read, name)
                    self._pending[name] = future
                waiting.append(future)
        wait(waiting, timeout=self._timeout * 4)
        with self._lock:
            self._forget_old(now)
            return {n: r for n in names if (r := self._readings.get(n)) is not None}

    def _read(self, name: str) -> None:
        stats = self._runtime.node_stats(name, self._timeout)
        fields = dict(stats.fields) if stats is not None else {}
        at = self._now()
        with self._lock:
            self._readings[name] = Reading(fields, at, _ops(fields, self._readings.get(name), at))
            self._pending.pop(name, None)

    def _forget_old(self, now: float) -> None:
        """Nodes nobody asked about for a minute (deleted ones) are forgotten."""
        for name in [n for n, r in self._readings.items() if now - r.at > 60.0]:
            del self._readings[name]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _ops(fields: Mapping[str, str], before: Reading | None, at: float) -> float | None:
    if "instantaneous_ops_per_sec" in fields:  # redis/valkey measure it themselves
        return _number(fields, "instantaneous_ops_per_sec")
    if not fields or before is None or not before.fields or at <= before.at:
        return None
    total = sum(_number(fields, k) or 0 for k in _MEMCACHED_OPS)
    earlier = sum(_number(before.fields, k) or 0 for k in _MEMCACHED_OPS)
    return None if total < earlier else round((total - earlier) / (at - before.at), 1)


def _number(fields: Mapping[str, str], name: str) -> float | None:
    try:
        return float(fields[name])
    except (KeyError, ValueError):
        return None


def _int(fields: Mapping[str, str], name: str) -> int | None:
    value = _number(fields, name)
    return None if value is None else int(value)


class Node(BaseModel):
    node: str = Field(description="The runtime's name of the node (its process directory or container)")
    cache_cluster_id: str
    node_id: str
    replication_group_id: str | None
    engine: str
    engine_version: str | None = Field(description="AWS's release of the cache's engine line, as "
                                                   "DescribeCacheClusters shows it")
    running_version: str | None = Field(description="The version the node's engine binary reports (what "
                                                    "really runs here); null before it answers")
    status: str = Field(description="CacheNodeStatus, as DescribeCacheClusters shows it")
    availability_zone: str | None
    address: str | None
    port: int | None
    healthy: bool | None = Field(description="The health monitor's verdict; null: not watched or not probed yet")
    role: Literal["primary", "replica"] | None = Field(description="As the engine reports it; null for memcached "
                                                                   "or a node that does not answer")
    replication_offset: int | None = Field(description="master_repl_offset of a primary, slave_repl_offset of a "
                                                       "replica")
    replication_lag_bytes: int | None = Field(description="How far a replica's offset is behind its primary's")
    replication_link: str | None = Field(description="A replica's master_link_status (up or down)")
    used_memory_bytes: int | None
    connected_clients: int | None
    ops_per_second: float | None


class NodeList(BaseModel):
    nodes: list[Node]


def _clusters(context: RequestContext, cluster: str | None, group: str | None) -> list[m.CacheCluster]:
    """The clusters asked for, as DescribeCacheClusters shows them (its refusals are ours)."""
    if group is not None:
        describe_replication_groups(context, {"ReplicationGroupId": group})  # ReplicationGroupNotFoundFault
    if cluster is not None:
        found = describe_cache_clusters(context, {"CacheClusterId": cluster, "ShowCacheNodeInfo": True})
        clusters = found["CacheClusters"]
    else:
        clusters = []
        params: m.DescribeCacheClustersMessage = {"ShowCacheNodeInfo": True}
        while True:
            page = describe_cache_clusters(context, params)
            clusters += page["CacheClusters"]
            if "Marker" not in page:
                break
            params["Marker"] = page["Marker"]
    return [c for c in clusters if group is None or c.get("ReplicationGroupId", "").lower() == group.lower()]


def node_router() -> APIRouter:
    router = APIRouter(route_class=AwsErrorRoute, tags=["nodes"], responses=ERRORS)

    @router.get("/api/v1/nodes", response_model=NodeList,
                summary="Cache nodes with their role, health, replication, memory, clients and ops/s")
    def nodes(request: Request, cluster: str | None = Query(default=None, description="CacheClusterId"),
              group: str | None = Query(default=None, description="ReplicationGroupId"),
              account: str | None = ACCOUNT, region: str | None = REGION) -> NodeList:
        service = service_of(request)
        context = context_for(request, account, region)
        rows: list[tuple[m.CacheCluster, m.CacheNode, str]] = [
            (c, n, node_name(context.account, context.region, c["CacheClusterId"], n["CacheNodeId"]))
            for c in _clusters(context, cluster, group) for n in c.get("CacheNodes", []) if "CacheNodeId" in n]
        health = service.health
        down = {name for _, _, name in rows if health.is_down(name)}
        readings = service.node_stats.read([name for _, _, name in rows if name not in down])
        # A group's primary, by what the engines say: where its replicas' lag is measured from.
        primaries: dict[str, int] = {}
        for c, _, name in rows:
            fields = readings[name].fields if name in readings else {}
            if c.get("ReplicationGroupId") and fields.get("role") == "master":
                offset = _int(fields, "master_repl_offset")
                if offset is not None:
                    primaries[c["ReplicationGroupId"]] = offset
        out = []
        for c, n, name in rows:
            fields = readings[name].fields if name in readings else {}
            probe = health.last_probe(name)
            role = ROLES.get(fields.get("role") or (probe.role if probe is not None and probe.ok else None) or "")
            offset = _int(fields, "master_repl_offset" if role == "primary" else "slave_repl_offset")
            primary = primaries.get(c.get("ReplicationGroupId", ""))
            endpoint = n.get("Endpoint", {})
            out.append(Node(
                node=name, cache_cluster_id=c["CacheClusterId"], node_id=n["CacheNodeId"],
                replication_group_id=c.get("ReplicationGroupId"), engine=c.get("Engine", ""),
                engine_version=c.get("EngineVersion"), status=n.get("CacheNodeStatus", ""),
                running_version=(probe.version if probe is not None and probe.ok and probe.version else
                                 fields.get("valkey_version") or fields.get("redis_version") or fields.get("version")),
                availability_zone=n.get("CustomerAvailabilityZone"), address=endpoint.get("Address"),
                port=endpoint.get("Port"),
                healthy=False if name in down else (None if probe is None else True),
                role=role if name not in down else None, replication_offset=offset if role else None,
                replication_lag_bytes=(max(0, primary - offset) if role == "replica" and primary is not None
                                       and offset is not None else None),
                replication_link=fields.get("master_link_status") if role == "replica" else None,
                used_memory_bytes=_int(fields, "used_memory") if "used_memory" in fields else _int(fields, "bytes"),
                connected_clients=(_int(fields, "connected_clients") if "connected_clients" in fields
                                   else _int(fields, "curr_connections")),
                ops_per_second=readings[name].ops_per_second if name in readings else None))
        return NodeList(nodes=out)

    return router
