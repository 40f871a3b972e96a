"""Redis Cluster for the fake runtime: the cluster state real nodes would keep in their nodes.conf
(an id, the slots a master serves, the master a replica follows, the nodes it has met), kept
across restarts and dropped by remove(), and the CLUSTER commands acting on it."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from engine.cluster import ClusterNode, ClusterView, SlotRange, covers_all, merge_ranges
from engine.keymove import key_slot
from engine.runtime.base import NodeConfig, NodeState, RuntimeError_


class _Node(Protocol):
    config: NodeConfig
    state: NodeState
    role: str | None
    hung: bool
    data: dict[str, str]


@dataclass
class _Member:
    node_id: str
    slots: tuple[SlotRange, ...] = ()
    master: str | None = None  # the id of the master it replicates
    peers: set[str] = field(default_factory=set)  # names of the nodes it has met
    ghosts: dict[str, ClusterNode] = field(default_factory=dict)  # removed nodes it still knows of


class FakeClusterCommands:
    """Mixin of FakeRuntime: needs its `_lock`, `_nodes`, `calls`, `primary_of` and `_command_target`."""

    _lock: threading.RLock
    _nodes: Mapping[str, _Node]  # FakeRuntime's dict of _FakeNode
    calls: list[tuple[str, str]]
    primary_of: dict[str, tuple[str, int] | None]
    _cluster: dict[str, _Member]
    _cluster_ids = itertools.count(1)

    def _command_target(self, name: str) -> _Node:
        raise NotImplementedError  # provided by FakeRuntime

    # ---- hooks of FakeRuntime --------------------------------------------------------------

    def _cluster_started(self, name: str, node: _Node) -> None:
        """A cluster node starts with the state its nodes.conf kept (new: an id of its own)."""
        if node.config.settings.get("cluster-enabled", "no") != "yes":
            return
        me = self._cluster.get(name)
        if me is None:
            me = self._cluster[name] = _Member(node_id=f"{next(self._cluster_ids):040x}")
        master = self._by_id(me.master) if me.master else None
        node.role = "slave" if me.master else "master"
        self.primary_of[name] = (self._nodes[master].config.host, self._nodes[master].config.port) if master else None

    def _cluster_removed(self, name: str) -> None:
        """Its nodes.conf is gone; the nodes that knew it keep it, failing, until they forget it."""
        me = self._cluster.get(name)
        node = self._nodes.get(name)
        if me is None or node is None:
            return
        ghost = ClusterNode(node_id=me.node_id, host=node.config.host, port=node.config.port,
                            role="slave" if me.master else "master", master_id=me.master, slots=me.slots,
                            failing=True, myself=False)
        for other in self._component(name) - {name}:
            self._cluster[other].peers.discard(name)
            self._cluster[other].ghosts[me.node_id] = ghost
        del self._cluster[name]

    # ---- the protocol's cluster commands -----------------------------------------------------

    def cluster_view(self, name: str) -> ClusterView:
        with self._lock:
            self.calls.append(("cluster_view", name))
            me = self._member(name)
            nodes = []
            for other in sorted(self._component(name)):
                m, node = self._cluster[other], self._nodes[other]
                nodes.append(ClusterNode(
                    node_id=m.node_id, host=node.config.host, port=node.config.port,
                    role="slave" if m.master else "master", master_id=m.master, slots=m.slots,
                    failing=node.state is not NodeState.RUNNING or node.hung, myself=other == name))
            nodes.extend(g for m in (self._cluster[o] for o in self._component(name)) for g in m.ghosts.values()
                         if g.node_id not in {n.node_id for n in nodes} and g.node_id in me.ghosts)
            serving = [r for n in nodes if n.role == "master" and not n.failing for r in n.slots]
            return ClusterView(state_ok=covers_all(serving), known_nodes=len(nodes), current_epoch=0,
                               nodes=tuple(nodes)) if me else ClusterView(False, 0, 0, ())

    def cluster_meet(self, name: str, peers: Sequence[tuple[str, int]]) -> None:
        with self._lock:
            self.calls.append(("cluster_meet", name))
            me = self._member(name)
            for address in peers:
                other = next((n for n, x in self._nodes.items() if (x.config.host, x.config.port) == address
                              and x.state is NodeState.RUNNING and n in self._cluster), None)
                if other is not None and other != name:
                    me.peers.add(other)
                    self._cluster[other].peers.add(name)

    def cluster_add_slots(self, name: str, ranges: Sequence[SlotRange]) -> None:
        with self._lock:
            self.calls.append(("cluster_add_slots", name))
            me = self._member(name)
            wanted = merge_ranges(ranges)
            for other in self._component(name):
                for first, last in self._cluster[other].slots:
                    if any(a <= last and first <= b for a, b in wanted):
                        raise RuntimeError_(f"node {name}: ERR Slot {max(first, wanted[0][0])} is already busy")
            me.slots = merge_ranges([*me.slots, *wanted])

    def cluster_replicate(self, name: str, node_id: str) -> None:
        with self._lock:
            self.calls.append(("cluster_replicate", name))
            me = self._member(name)
            master = self._by_id(node_id)
            if master is None or master not in self._component(name):
                raise RuntimeError_(f"node {name}: ERR Unknown node {node_id}")
            if me.slots:
                raise RuntimeError_(f"node {name}: ERR To set a master the node must be empty and without "
                                    "assigned slots.")
            me.master = node_id
            self._nodes[name].role = "slave"
            self.primary_of[name] = (self._nodes[master].config.host, self._nodes[master].config.port)

    def cluster_forget(self, name: str, node_ids: Sequence[str]) -> None:
        with self._lock:
            self.calls.append(("cluster_forget", name))
            me = self._member(name)
            if me.node_id in node_ids:
                raise RuntimeError_(f"node {name}: ERR I tried hard but I can't forget myself...")
            for node_id in node_ids:
                me.ghosts.pop(node_id, None)

    def cluster_failover(self, name: str, mode: str = "") -> None:
        """The replica takes its master's slots; the master (and its other replicas) follow it.
        Without FORCE or TAKEOVER the master must answer, as for a real manual failover."""
        with self._lock:
            self.calls.append(("cluster_failover", name))
            me = self._member(name)
            old = self._by_id(me.master) if me.master else None
            if old is None:
                raise RuntimeError_(f"node {name}: ERR You should send CLUSTER FAILOVER to a replica")
            if not mode and self._nodes[old].state is not NodeState.RUNNING:
                raise RuntimeError_(f"node {name}: ERR Master is down or failed, please use CLUSTER FAILOVER FORCE")
            previous = self._cluster[old]
            me.slots, previous.slots = previous.slots, ()
            for other, m in self._cluster.items():
                if m.master == previous.node_id or other == old:
                    m.master = me.node_id
                    self._nodes[other].role = "slave"
                    self.primary_of[other] = (self._nodes[name].config.host, self._nodes[name].config.port)
            me.master = None
            self._nodes[name].role = "master"
            self.primary_of[name] = None

    # ---- for tests ---------------------------------------------------------------------------

    def move_keys(self, name: str, owners: Sequence[tuple[Sequence[SlotRange], str]], timeout: float = 30.0) -> int:
        """As MIGRATE would: each key goes to the owner of its slot, and leaves the node."""
        with self._lock:
            self.calls.append(("move_keys", name))
            source = self._command_target(name)
            targets = [(ranges, self._command_target(owner)) for ranges, owner in owners]
            for key, value in source.data.items():
                slot = key_slot(key.encode())
                target = next((t for ranges, t in targets if any(a <= slot <= b for a, b in ranges)), None)
                if target is None:
                    raise RuntimeError_(f"node {name}: moving its keys failed: slot {slot} has no owner")
                target.data[key] = value
            moved, source.data = len(source.data), {}
            return moved

    def cluster_id_of(self, name: str) -> str | None:
        with self._lock:
            m = self._cluster.get(name)
            return m.node_id if m else None

    # ---- internals ---------------------------------------------------------------------------

    def _member(self, name: str) -> _Member:
        self._command_target(name)
        me = self._cluster.get(name)
        if me is None:
            raise RuntimeError_(f"node {name}: ERR This instance has cluster support disabled", temporary=False)
        return me

    def _by_id(self, node_id: str | None) -> str | None:
        return next((n for n, m in self._cluster.items() if m.node_id == node_id), None)

    def _component(self, name: str) -> set[str]:
        seen, todo = {name}, [name]
        while todo:
            for peer in self._cluster[todo.pop()].peers:
                if peer not in seen and peer in self._nodes:
                    seen.add(peer)
                    todo.append(peer)
        return seen
