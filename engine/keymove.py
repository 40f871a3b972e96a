"""Moving every key of one node into a Redis Cluster by hash slot: how a cluster is seeded from
RDB files that were not cut along its slots (a backup of another shard count, or of a cache
without cluster mode). The source node (any redis/valkey holding the data, cluster mode off)
hands each key to the master serving its slot with MIGRATE, server to server: values, types and
remaining TTLs travel as the engine's own DUMP payload, never through this process.

MIGRATE without COPY deletes what it moved from the source, so a pass interrupted half way is
simply run again: what is left is what has not moved (REPLACE makes a key moved twice harmless).
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.access import Reach
from engine.adapters import redis as redis_adapter
from engine.cluster import SLOTS, SlotRange

__all__ = ["key_slot", "move_keys"]

BATCH = 1000  # keys per SCAN and per MIGRATE: few round trips, replies well under a second
_ROUNDS = 10  # full SCANs at most; what is still left after them are keys expiring meanwhile
_TABLE: list[int] = []


def _crc16_table() -> list[int]:
    if not _TABLE:  # CRC16/XMODEM (polynomial 0x1021), as the cluster specification
        for byte in range(256):
            crc = byte << 8
            for _ in range(8):
                crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            _TABLE.append(crc & 0xFFFF)
    return _TABLE


def key_slot(key: bytes) -> int:
    """The hash slot of `key`: CRC16 of the key, or of its `{hash tag}` when it has a non-empty one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    table, crc = _crc16_table(), 0
    for byte in key:
        crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ byte) & 0xFF]
    return crc % SLOTS


def move_keys(source: Reach, owners: Sequence[tuple[Sequence[SlotRange], Reach]], *,
              timeout: float = 30.0) -> int:
    """Move every key of database 0 of `source` to the node of `owners` whose slot ranges hold
    its slot (the cluster's masters, as `source` reaches them). Returns the keys moved. Raises
    OSError (a node unreachable) or redis_adapter.RespError (a MIGRATE refused: a target that
    does not serve the slot, a key already there with another value is replaced, not refused)."""
    by_slot: list[int] = [-1] * SLOTS
    for index, (ranges, _) in enumerate(owners):
        for first, last in ranges:
            by_slot[first:last + 1] = [index] * (last - first + 1)
    if -1 in by_slot:
        raise ValueError(f"slot {by_slot.index(-1)} has no owner")
    moved, cursor, rounds = 0, b"0", 0
    millis = str(int(timeout * 1000))
    while True:
        reply = redis_adapter.execute(source, "SCAN", cursor, "COUNT", str(BATCH), timeout=timeout)
        if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], list):
            raise redis_adapter.RespError(f"unexpected SCAN reply from {source.where}")
        cursor = reply[0] if isinstance(reply[0], bytes) else str(reply[0]).encode()
        groups: dict[int, list[bytes]] = {}
        for key in reply[1]:
            raw = key if isinstance(key, bytes) else str(key).encode()
            groups.setdefault(by_slot[key_slot(raw)], []).append(raw)
        commands = [_migrate(owners[index][1], keys, millis) for index, keys in groups.items()]
        if commands:
            redis_adapter.execute_all(source, commands, timeout=timeout)
            moved += sum(len(keys) for keys in groups.values())
        if cursor == b"0":
            left = redis_adapter.execute(source, "DBSIZE", timeout=timeout)
            rounds += 1
            if not left or rounds >= _ROUNDS:  # keys SCAN skipped (the table shrank as keys left): again
                return moved


def _migrate(target: Reach, keys: list[bytes], millis: str) -> list[str | bytes]:
    auth = target.auth()
    credentials: list[str | bytes] = []
    if auth is not None:
        credentials = ["AUTH2", *auth[1:]] if len(auth) == 3 else ["AUTH", auth[1]]
    return ["MIGRATE", target.host, str(target.port), "", "0", millis, "REPLACE", *credentials, "KEYS", *keys]
