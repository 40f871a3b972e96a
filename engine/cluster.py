"""Redis Cluster as the nodes report it: CLUSTER INFO and CLUSTER NODES parsed into a view, and
slot ranges. Pure data and parsing (no sockets): runtimes fill it from their nodes' answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["SLOTS", "ClusterNode", "ClusterView", "SlotRange", "covers_all", "even_ranges", "merge_ranges",
           "parse_cluster_info", "parse_cluster_nodes", "range_args", "slot_count", "view_of"]

SLOTS = 16384  # hash slots of a Redis Cluster: 0-16383

SlotRange = tuple[int, int]  # first and last slot, both included


@dataclass(frozen=True)
class ClusterNode:
    """One line of CLUSTER NODES, as the node that answered sees that node."""

    node_id: str
    host: str
    port: int
    role: str  # "master" | "slave"
    master_id: str | None  # the master a replica follows
    slots: tuple[SlotRange, ...]
    failing: bool  # flagged fail or fail? (suspected)
    myself: bool
    handshake: bool = False  # met but not yet known by its id
    config_epoch: int = 0


@dataclass(frozen=True)
class ClusterView:
    """What one node says of its cluster: its state, its own id and every node it knows."""

    state_ok: bool
    known_nodes: int
    current_epoch: int
    nodes: tuple[ClusterNode, ...]

    @property
    def me(self) -> ClusterNode:
        return next(n for n in self.nodes if n.myself)

    def node(self, node_id: str) -> ClusterNode | None:
        return next((n for n in self.nodes if n.node_id == node_id), None)

    def by_address(self, host: str, port: int) -> ClusterNode | None:
        return next((n for n in self.nodes if (n.host, n.port) == (host, port) and not n.handshake), None)

    def slot_map(self) -> dict[SlotRange, str]:
        """Slot range -> the id of the master this node believes serves it."""
        return {r: n.node_id for n in self.nodes if n.role == "master" for r in n.slots}


def merge_ranges(ranges: Iterable[SlotRange]) -> tuple[SlotRange, ...]:
    """Sorted, adjacent and overlapping ranges joined."""
    out: list[SlotRange] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return tuple(out)


def slot_count(ranges: Iterable[SlotRange]) -> int:
    return sum(last - first + 1 for first, last in merge_ranges(ranges))


def covers_all(ranges: Iterable[SlotRange]) -> bool:
    return merge_ranges(ranges) == ((0, SLOTS - 1),)


def even_ranges(count: int) -> list[SlotRange]:
    """`count` contiguous ranges splitting 0-16383 as evenly as possible (the first ones one
    slot larger), as `redis-cli --cluster create` assigns them."""
    out, first = [], 0
    for i in range(count):
        size = SLOTS // count + (1 if i < SLOTS % count else 0)
        out.append((first, first + size - 1))
        first += size
    return out


def parse_cluster_info(text: str | bytes) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_cluster_nodes(text: str | bytes) -> tuple[ClusterNode, ...]:
    """CLUSTER NODES: `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch>
    <link> <slot>...`; slots being imported or migrated (`[...]`) are not owned: left out."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@", 1)[0]
        host, _, port = address.rpartition(":")
        flags = set(parts[2].split(","))
        slots: list[SlotRange] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(ClusterNode(
            node_id=parts[0], host=host, port=int(port) if port.isdigit() else 0,
            role="slave" if "slave" in flags else "master",
            master_id=None if parts[3] == "-" else parts[3], slots=merge_ranges(slots),
            failing=bool(flags & {"fail", "fail?"}), myself="myself" in flags, handshake="handshake" in flags,
            config_epoch=int(parts[6]) if parts[6].isdigit() else 0))
    return tuple(nodes)


def view_of(info: str | bytes, nodes: str | bytes) -> ClusterView:
    fields = parse_cluster_info(info)
    parsed = parse_cluster_nodes(nodes)
    if not any(n.myself for n in parsed):
        raise ValueError("CLUSTER NODES names no `myself`")
    return ClusterView(state_ok=fields.get("cluster_state") == "ok",
                       known_nodes=int(fields.get("cluster_known_nodes", "0") or 0),
                       current_epoch=int(fields.get("cluster_current_epoch", "0") or 0), nodes=parsed)


def range_args(ranges: Sequence[SlotRange]) -> list[str]:
    return [str(v) for r in ranges for v in r]
