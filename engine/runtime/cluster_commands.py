"""Redis Cluster commands for runtimes whose nodes answer over TCP (process and docker): what a
control plane needs to form a cluster (MEET, ADDSLOTSRANGE, REPLICATE), watch it (INFO and NODES
as one view) and fail a shard over (CLUSTER FAILOVER)."""

from __future__ import annotations

from collections.abc import Sequence

from engine import cluster
from engine.access import Reach
from engine.adapters import redis as redis_adapter
from engine.keymove import move_keys
from engine.runtime.base import NodeConfig, RuntimeError_

FAILOVER_MODES = ("", "FORCE", "TAKEOVER")


class TcpClusterCommands:
    """Mixin: needs `_redis_all(name, commands)` of TcpNodeCommands."""

    def _redis_all(self, name: str, commands: Sequence[Sequence[str]]) -> list[redis_adapter.RespReply]:
        raise NotImplementedError  # provided by TcpNodeCommands

    def _running_redis(self, name: str, what: str) -> NodeConfig:
        raise NotImplementedError  # provided by TcpNodeCommands

    def _reach(self, config: NodeConfig) -> Reach:
        raise NotImplementedError  # provided by TcpNodeCommands

    def cluster_view(self, name: str) -> cluster.ClusterView:
        info, nodes = self._redis_all(name, [["CLUSTER", "INFO"], ["CLUSTER", "NODES"]])
        if not isinstance(info, (bytes, str)) or not isinstance(nodes, (bytes, str)):
            raise RuntimeError_(f"node {name}: unexpected CLUSTER reply")
        try:
            return cluster.view_of(info, nodes)
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: {exc}") from exc

    def cluster_meet(self, name: str, peers: Sequence[tuple[str, int]]) -> None:
        if peers:
            self._redis_all(name, [["CLUSTER", "MEET", host, str(port)] for host, port in peers])

    def cluster_add_slots(self, name: str, ranges: Sequence[cluster.SlotRange]) -> None:
        if ranges:
            self._redis_all(name, [["CLUSTER", "ADDSLOTSRANGE", *cluster.range_args(ranges)]])

    def cluster_replicate(self, name: str, node_id: str) -> None:
        self._redis_all(name, [["CLUSTER", "REPLICATE", node_id]])

    def cluster_forget(self, name: str, node_ids: Sequence[str]) -> None:
        if node_ids:
            self._redis_all(name, [["CLUSTER", "FORGET", node_id] for node_id in node_ids])

    def cluster_failover(self, name: str, mode: str = "") -> None:
        if mode not in FAILOVER_MODES:
            raise RuntimeError_(f"unknown CLUSTER FAILOVER mode {mode!r}", temporary=False)
        self._redis_all(name, [["CLUSTER", "FAILOVER", *([mode] if mode else [])]])

    def move_keys(self, name: str, owners: Sequence[tuple[Sequence[cluster.SlotRange], str]],
                  timeout: float = 30.0) -> int:
        source = self._reach(self._running_redis(name, "has no keys"))
        targets = [(ranges, self._reach(self._running_redis(owner, "is no cluster node"))) for ranges, owner in owners]
        try:
            return move_keys(source, targets, timeout=timeout)
        except (OSError, ValueError, redis_adapter.RespError) as exc:
            raise RuntimeError_(f"node {name}: moving its keys failed: {exc}") from exc
