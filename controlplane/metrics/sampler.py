"""The node sampler: a thread that reads every node's stats every `interval` seconds and keeps
the last readings as one immutable snapshot. `/metrics` renders that snapshot and nothing else,
so a scrape never waits for a node, never reaches one, and never blocks the API.

Which nodes: every node of every cache cluster in the store (its mirror: no SQLite), named as
the reconcilers name them. A node that is gone from the store, or does not answer, is not in the
next snapshot, so its series end.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from controlplane.metrics.cloudwatch import node_values, replica_lags
from controlplane.reconciler.infra import node_name
from controlplane.state.records import CacheCluster
from controlplane.state.store import Store
from engine import NodeRuntime, NodeStats

log = logging.getLogger("elasticache_local.metrics")

# The labels of every per-node metric, in this order (cloudwatch_exporter's names for AWS's
# dimensions CacheClusterId and CacheNodeId; the rest says where the node belongs).
LABELS = ("cache_cluster_id", "cache_node_id", "replication_group_id", "engine", "account", "region")
READ_TIMEOUT = 1.0  # seconds a node may take to answer; a slower one is left out of this round
READERS = 4  # nodes read at once: one hung node costs a round at most READ_TIMEOUT / READERS each


@dataclass(frozen=True)
class NodeReading:
    labels: tuple[str, ...]  # values of LABELS
    engine: str
    values: Mapping[str, float]  # AWS metric name -> value


@dataclass(frozen=True)
class Snapshot:
    nodes: tuple[NodeReading, ...] = ()
    statuses: Mapping[str, int] = field(default_factory=dict)  # node status -> how many nodes
    taken_at: float = 0.0  # time.monotonic() at the end of the round; 0: none yet
    seconds: float = 0.0  # how long the round took


@dataclass(frozen=True)
class _Target:
    name: str  # the runtime's node name
    labels: tuple[str, ...]
    engine: str
    host: str
    port: int


class NodeSampler:
    def __init__(self, store: Store, runtime: NodeRuntime, interval: float, *,
                 timeout: float = READ_TIMEOUT, cpus: int | None = None) -> None:
        self._store = store
        self._runtime = runtime
        self.interval = interval
        self._timeout = timeout
        self._cpus = cpus or os.cpu_count() or 1
        self._previous: dict[str, NodeStats] = {}
        self._snapshot = Snapshot()
        self._round = threading.Lock()  # one round at a time (the thread, a test's sample())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def snapshot(self) -> Snapshot:
        """The last round's readings (a reference swap: readers never wait for a round)."""
        return self._snapshot

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="metrics-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout * 4 + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a bug must not end the readings for good
                log.exception("reading node metrics failed")
            self._stop.wait(self.interval)

    def sample(self) -> Snapshot:
        """One round: every node read, the snapshot replaced. Blocking: off the event loop."""
        with self._round:
            started = time.monotonic()
            targets, statuses = self._targets()
            stats = self._read(targets)
            lags: dict[tuple[str, int], float] = {}
            for primary in stats.values():
                if primary.fields.get("role") == "master":
                    lags.update(replica_lags(primary.fields))
            nodes = []
            for target in targets:
                reading = stats.get(target.name)
                if reading is None:
                    continue
                values = node_values(reading, self._previous.get(target.name), self._cpus,
                                     lags.get((target.host, target.port)))
                nodes.append(NodeReading(target.labels, target.engine, values))
            self._previous = stats  # nodes gone or silent lose their previous reading too
            ended = time.monotonic()
            self._snapshot = Snapshot(tuple(nodes), dict(statuses), ended, ended - started)
            return self._snapshot

    def _targets(self) -> tuple[list[_Target], Counter[str]]:
        targets: list[_Target] = []
        statuses: Counter[str] = Counter()
        for rec in self._store.records(CacheCluster):
            for node in rec.status.nodes:
                statuses[node.status] += 1
                labels = (rec.id, node.node_id, rec.spec.replication_group_id or "", rec.spec.engine,
                          rec.account, rec.region)
                targets.append(_Target(node_name(rec.account, rec.region, rec.id, node.node_id), labels,
                                       rec.spec.engine, node.host, node.port))
        return targets, statuses

    def _read(self, targets: list[_Target]) -> dict[str, NodeStats]:
        def read(target: _Target) -> tuple[str, NodeStats | None]:
            try:
                return target.name, self._runtime.node_stats(target.name, self._timeout)
            except Exception:  # node_stats never raises by contract; a runtime bug must not end the round
                log.exception("reading the stats of node %s failed", target.name)
                return target.name, None

        if len(targets) <= 1:
            found = [read(t) for t in targets]
        else:
            with ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="metrics-read") as pool:
                found = list(pool.map(read, targets))
        return {name: stats for name, stats in found if stats is not None}
