"""`GET /metrics` in Prometheus' text format: the nodes' CloudWatch metrics from the sampler's
last snapshot, and the service's own (API and reconcile latency, failovers, nodes by status).

Naming: a node metric is `elasticache_<AWS name>`, the CloudWatch name kept as it is
(`elasticache_CPUUtilization`, `elasticache_CacheHits_total`: counters get Prometheus' `_total`),
labelled cache_cluster_id, cache_node_id, replication_group_id, engine, account, region. The
service's own are `elasticache_local_<snake_case>`. One CollectorRegistry per service, never the
process-wide default.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from controlplane.metrics.cloudwatch import ALL, COUNTER
from controlplane.metrics.sampler import LABELS, NodeSampler
from controlplane.reconciler.replication_groups import Transition
from controlplane.state.records import FailoverStep, ResourceKey

NODE_PREFIX = "elasticache_"
SERVICE_PREFIX = "elasticache_local_"
# API calls answer in ~0.1-10 ms; a create or delete on a worker thread may take longer.
API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FAILOVER_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SnapshotCollector(Collector):
    """Renders the sampler's last snapshot: no node is reached while a scrape runs."""

    def __init__(self, sampler: NodeSampler) -> None:
        self._sampler = sampler

    def describe(self) -> Iterable[Metric]:
        return []  # names vary with the nodes; registering must not call collect()

    def collect(self) -> Iterable[Metric]:
        snapshot = self._sampler.snapshot
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for node in snapshot.nodes:
            for name, value in node.values.items():
                family = families.get(name)
                if family is None:
                    metric = ALL[name]
                    kind = CounterMetricFamily if metric.kind == COUNTER else GaugeMetricFamily
                    family = families[name] = kind(NODE_PREFIX + name, metric.help, labels=LABELS)
                family.add_metric(node.labels, value)
        yield from families.values()
        nodes = GaugeMetricFamily(SERVICE_PREFIX + "nodes", "cache nodes by status (as Describe shows them)",
                                  labels=("status",))
        for status, count in sorted(snapshot.statuses.items()):
            nodes.add_metric((status,), count)
        yield nodes
        yield GaugeMetricFamily(SERVICE_PREFIX + "node_metrics_read_seconds",
                                "how long the last round of reading every node's stats took",
                                value=snapshot.seconds)


class Metrics:
    """The service's registries and instruments; the observers the other parts are handed.

    Two registries, rendered one after the other: `nodes` (the snapshot: its text is rendered
    once per sampler round and kept, since with 100 nodes it is most of the page) and `registry`
    (the service's own instruments, which move with every request)."""

    def __init__(self, sampler: NodeSampler) -> None:
        self.sampler = sampler
        self.nodes = CollectorRegistry(auto_describe=False)
        self.nodes.register(SnapshotCollector(sampler))
        self._nodes_text: tuple[object, bytes] = (None, b"")  # (the snapshot it shows, its text)
        self.registry = CollectorRegistry(auto_describe=False)
        self.api_latency = Histogram(
            SERVICE_PREFIX + "api_request_duration_seconds", "API requests by API (query, json) and operation",
            ("api", "operation"), registry=self.registry, buckets=API_BUCKETS)
        self.reconcile_latency = Histogram(
            SERVICE_PREFIX + "reconcile_duration_seconds", "control-loop passes by resource kind and outcome",
            ("kind", "outcome"), registry=self.registry, buckets=RECONCILE_BUCKETS)
        self.failovers = Counter(
            SERVICE_PREFIX + "failovers", "failovers ended, by reason (automatic, test) and outcome "
            "(completed, aborted)", ("reason", "outcome"), registry=self.registry)
        self.failover_duration = Histogram(
            SERVICE_PREFIX + "failover_duration_seconds", "failovers from detection to done (service clock)",
            ("reason", "outcome"), registry=self.registry, buckets=FAILOVER_BUCKETS)
        age = Gauge(SERVICE_PREFIX + "node_metrics_age_seconds", "seconds since the node metrics were read "
                    "(NaN: not yet)", registry=self.registry)
        age.set_function(lambda: time.monotonic() - sampler.snapshot.taken_at if sampler.snapshot.taken_at
                         else float("nan"))
        self._failover_starts: dict[ResourceKey, datetime] = {}

    def start(self) -> None:
        self.sampler.start()

    def stop(self) -> None:
        self.sampler.stop()

    # --- observers handed to the API faces and the control loop ---

    def observe_query(self, operation: str, seconds: float) -> None:
        self.api_latency.labels("query", operation).observe(seconds)

    def observe_json(self, route: str, seconds: float) -> None:
        self.api_latency.labels("json", route).observe(seconds)

    def observe_reconcile(self, kind: str, seconds: float, outcome: str) -> None:
        self.reconcile_latency.labels(kind, outcome).observe(seconds)

    def observe_failover(self, transition: Transition) -> None:
        """Counts a failover at its end; its duration from its start (told in the transition, or
        seen here when a restarted service resumed it)."""
        if transition.previous is None:
            self._failover_starts[transition.group] = transition.started_at or transition.at
        if transition.step != FailoverStep.DONE:
            return
        started = transition.started_at or self._failover_starts.get(transition.group)
        self._failover_starts.pop(transition.group, None)
        outcome = "aborted" if transition.note else "completed"  # an abort ends with its event's text
        self.failovers.labels(transition.reason, outcome).inc()
        if started is not None:
            seconds = max(0.0, (transition.at - started).total_seconds())
            self.failover_duration.labels(transition.reason, outcome).observe(seconds)

    # --- the route ---

    def render(self) -> bytes:
        snapshot = self.sampler.snapshot
        shown, text = self._nodes_text
        if shown is not snapshot:
            text = generate_latest(self.nodes)
            self._nodes_text = (snapshot, text)  # one tuple: a concurrent render sees old or new, whole
        return text + generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        # Rendering reads only memory, but is CPU work of some milliseconds with many nodes: a
        # worker thread keeps it from delaying the API's other requests.
        body = await run_in_threadpool(self.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TimedRoutes:
    """ASGI middleware: the time to the response's start of every request under `prefix` (the
    JSON API), by method and route template (`GET /api/v1/cache-clusters/{cluster_id}`), so the
    label set stays bounded whatever paths callers try. A stream is timed to its first byte."""

    def __init__(self, app: ASGIApp, observe: Callable[[str, float], None], prefix: str = "/api/") -> None:
        self.app = app
        self._observe = observe
        self._prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self._prefix):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        told = False

        async def timed(message: MutableMapping[str, Any]) -> None:
            nonlocal told
            if message["type"] == "http.response.start" and not told:
                told = True
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                self._observe(f"{scope.get('method', '?')} {template}", time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, timed)


def install(app: FastAPI, metrics: Metrics) -> None:
    """`GET /metrics` on `app`, and the JSON API's requests timed."""
    app.router.add_route("/metrics", metrics.endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(TimedRoutes, observe=metrics.observe_json)
