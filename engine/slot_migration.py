"""Moving hash slots, with their keys, from one master of a Redis Cluster to another, the way
`redis-cli --cluster reshard` does it: the target IMPORTING, the source MIGRATING, the keys sent
with MIGRATE ... KEYS until the source has none left in the slot, then SETSLOT NODE on the
target, the source and every other master. Unlike redis-cli, many slots go in each round trip
(the commands of a batch of slots pipelined on one connection per node) and MIGRATE carries up
to `keys_per_call` keys.

Every step is idempotent and starts from what the nodes themselves say (their own line of
CLUSTER NODES: the slots they serve, those they migrate or import): a move interrupted anywhere
(a control plane restarted mid-slot) is finished by calling it again with the same slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.access import Reach
from engine.adapters import redis as redis_adapter

KEYS_PER_CALL = 1000  # keys per GETKEYSINSLOT and per MIGRATE
SLOTS_PER_ROUND = 256  # slots whose commands share one pipeline
MIGRATE_TIMEOUT_MS = 10_000
ROUND_TIMEOUT = 60.0  # seconds for one pipeline (its MIGRATEs run one after another on the source)


class MoveError(Exception):
    """A node refused a step (its reply), or could not be reached."""


@dataclass
class OwnLine:
    """What a node says of itself in CLUSTER NODES."""

    node_id: str
    slots: set[int] = field(default_factory=set)
    migrating: dict[int, str] = field(default_factory=dict)  # slot -> the node it goes to
    importing: dict[int, str] = field(default_factory=dict)  # slot -> the node it comes from


def parse_own_line(text: str | bytes) -> OwnLine:
    """The `myself` line of CLUSTER NODES, with its `[slot->-id]` / `[slot-<-id]` states."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8 or "myself" not in parts[2].split(","):
            continue
        own = OwnLine(node_id=parts[0])
        for item in parts[8:]:
            if item.startswith("["):
                slot, arrow, peer = item.strip("[]").partition("->-")
                if arrow:
                    own.migrating[int(slot)] = peer
                else:
                    slot, _, peer = item.strip("[]").partition("-<-")
                    own.importing[int(slot)] = peer
                continue
            first, _, last = item.partition("-")
            own.slots.update(range(int(first), int(last or first) + 1))
        return own
    raise MoveError("CLUSTER NODES names no `myself`")


def _calls(reach: Reach, commands: Sequence[Sequence[str | bytes]], timeout: float = ROUND_TIMEOUT,
           ) -> list[redis_adapter.RespReply]:
    """The replies of pipelined commands; the first error reply raises MoveError."""
    if not commands:
        return []
    try:
        return redis_adapter.execute_all(reach, commands, timeout=timeout)
    except (OSError, redis_adapter.RespError) as exc:
        raise MoveError(f"{reach.where}: {' '.join(str(c) for c in commands[0][:3])}: {exc}") from exc


def own_line(reach: Reach) -> OwnLine:
    reply = _calls(reach, [["CLUSTER", "NODES"]], timeout=5.0)[0]
    if not isinstance(reply, (bytes, str)):
        raise MoveError(f"{reach.where}: unexpected CLUSTER NODES reply")
    return parse_own_line(reply)


def _migrate_auth(target: Reach) -> list[str]:
    """MIGRATE's credentials for the target: those the engine itself uses there."""
    auth = target.auth()
    if auth is None:
        return []
    return ["AUTH2", auth[1], auth[2]] if len(auth) == 3 else ["AUTH", auth[1]]


def move_slots(source: Reach, target: Reach, others: Sequence[Reach], slots: Sequence[int], *,
               keys_per_call: int = KEYS_PER_CALL, slots_per_round: int = SLOTS_PER_ROUND) -> int:
    """Move `slots` from `source` to `target` with their keys; `others` (every other master)
    are told the new owner. Returns the number of keys moved. Raises MoveError."""
    moved = 0
    for start in range(0, len(slots), slots_per_round):
        moved += _move_round(source, target, others, list(slots[start:start + slots_per_round]), keys_per_call)
    return moved


def _move_round(source: Reach, target: Reach, others: Sequence[Reach], slots: list[int], keys_per_call: int) -> int:
    src, dst = own_line(source), own_line(target)
    # Slots the source still serves (or migrates): their keys go first. A slot the target
    # already took whose source still holds keys (interrupted between the two SETSLOT NODEs)
    # is finished the same way: MIGRATE is accepted by the slot's owner.
    held = [s for s in slots if s in src.slots or s in src.migrating]
    importing = [s for s in held if s not in dst.slots and dst.importing.get(s) != src.node_id]
    _calls(target, [["CLUSTER", "SETSLOT", str(s), "IMPORTING", src.node_id] for s in importing])
    migrating = [s for s in held if s in src.slots and src.migrating.get(s) != dst.node_id]
    _calls(source, [["CLUSTER", "SETSLOT", str(s), "MIGRATING", dst.node_id] for s in migrating])
    moved = _migrate_keys(source, target, held, keys_per_call)
    # The target first (it then serves them, with a new config epoch that gossip carries), then
    # the source (it stops sending ASK), then every other master (no stale MOVED), as redis-cli.
    announce = [["CLUSTER", "SETSLOT", str(s), "NODE", dst.node_id] for s in slots]
    _calls(target, [c for c, s in zip(announce, slots, strict=True) if s not in dst.slots or s in dst.importing])
    _calls(source, [c for c, s in zip(announce, slots, strict=True) if s in src.slots or s in src.migrating])
    for other in others:
        _calls(other, announce)
    return moved


def _migrate_keys(source: Reach, target: Reach, slots: list[int], keys_per_call: int) -> int:
    """MIGRATE every key of `slots` from the source to the target, many slots per pipeline,
    until GETKEYSINSLOT finds none left (REPLACE: the source's copy is the one clients wrote)."""
    moved, pending = 0, list(slots)
    auth = _migrate_auth(target)
    while pending:
        replies = _calls(source, [["CLUSTER", "GETKEYSINSLOT", str(s), str(keys_per_call)] for s in pending])
        batches = [(s, r) for s, r in zip(pending, replies, strict=True) if isinstance(r, list) and r]
        if not batches:
            return moved
        commands: list[list[str | bytes]] = []
        for _, keys in batches:
            commands.append(["MIGRATE", target.host, str(target.port), "", "0", str(MIGRATE_TIMEOUT_MS), "REPLACE",
                             *auth, "KEYS", *[k for k in keys if isinstance(k, (bytes, str))]])
        _calls(source, commands)
        moved += sum(len(keys) for _, keys in batches if isinstance(keys, list))
        pending = [s for s, _ in batches]  # a slot that answered no keys is empty: it stays so (ASK)
    return moved
