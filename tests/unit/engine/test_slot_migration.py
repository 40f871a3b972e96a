"""Slot moves on real cluster nodes of the process runtime (engine/slot_migration.py through the
runtime's cluster_move_slots): keys go with their slots, and a move interrupted midway (a slot
left importing/migrating with part of its keys moved, or owned by the target while the source
has not heard) is finished by moving the same slots again."""

from __future__ import annotations

import dataclasses

import redis

from engine import NodeConfig
from engine.cluster import key_slot
from tests.eventually import eventually
from tests.runtimes import ProcessKit

SETTINGS = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "cluster-node-timeout": "5000"}


def _client(config: NodeConfig) -> redis.Redis:
    return redis.Redis(host=config.host, port=config.port, socket_timeout=5)


def test_interrupted_moves_are_finished(kit: ProcessKit) -> None:
    runtime = kit.runtime()
    a, b = (kit.config(runtime, name) for name in ("slots-a", "slots-b"))
    # Each node announces its own address: its outgoing bus connections come from 127.0.0.1,
    # where it does not listen, and the other would learn that address instead.
    a, b = (dataclasses.replace(c, settings={**SETTINGS, "cluster-announce-ip": c.host}) for c in (a, b))
    for config in (a, b):
        runtime.start(config)
        eventually(lambda c=config: runtime.probe(c.name, 1.0).ok, 10.0, 0.02, f"{config.name} up")
    ca, cb = _client(a), _client(b)
    ca.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    runtime.cluster_meet(a.name, [(b.host, b.port)])
    ids = {n: c.execute_command("CLUSTER", "MYID").decode() for n, c in (("a", ca), ("b", cb))}
    eventually(lambda: len(cb.execute_command("CLUSTER", "NODES").decode().splitlines()) == 2
               and "handshake" not in ca.execute_command("CLUSTER", "NODES").decode(), 10.0, 0.05, "met")
    eventually(lambda: b"cluster_state:ok" in ca.execute_command("CLUSTER", "INFO"), 10.0, 0.05, "cluster ok")
    half, done, fresh = key_slot("{h}"), key_slot("{d}"), key_slot("{f}")
    pipe = ca.pipeline(transaction=False)
    for i in range(2500):
        pipe.set(f"{{h}}{i}", i)
        pipe.set(f"{{f}}{i}", i)
    pipe.execute()
    # `half`: interrupted mid-slot, 1000 of its keys moved; `done`: the target owns it, the
    # source still thinks it is migrating; `fresh`: not begun.
    cb.execute_command("CLUSTER", "SETSLOT", half, "IMPORTING", ids["a"])
    ca.execute_command("CLUSTER", "SETSLOT", half, "MIGRATING", ids["b"])
    keys = ca.execute_command("CLUSTER", "GETKEYSINSLOT", half, 1000)
    ca.execute_command("MIGRATE", b.host, b.port, "", 0, 5000, "KEYS", *keys)
    cb.execute_command("CLUSTER", "SETSLOT", done, "IMPORTING", ids["a"])
    ca.execute_command("CLUSTER", "SETSLOT", done, "MIGRATING", ids["b"])
    cb.execute_command("CLUSTER", "SETSLOT", done, "NODE", ids["b"])

    moved = runtime.cluster_move_slots(a.name, b.name, [half, done, fresh], [a.name, b.name])
    assert moved == 1500 + 2500
    assert ca.execute_command("CLUSTER", "COUNTKEYSINSLOT", half) == 0
    assert cb.execute_command("CLUSTER", "COUNTKEYSINSLOT", half) == 2500
    assert cb.execute_command("CLUSTER", "COUNTKEYSINSLOT", fresh) == 2500
    for client in (ca, cb):
        nodes = client.execute_command("CLUSTER", "NODES").decode()
        assert "[" not in nodes  # no slot left migrating or importing
        owner_b = next(line for line in nodes.splitlines() if line.startswith(ids["b"]))
        assert all(str(s) in owner_b.split()[8:] for s in (half, done, fresh))
    assert cb.get(f"{{h}}{2499}") == b"2499"
    # Moving them again does nothing: they are the target's.
    assert runtime.cluster_move_slots(a.name, b.name, [half, done, fresh], [a.name, b.name]) == 0
    ca.close()
    cb.close()
