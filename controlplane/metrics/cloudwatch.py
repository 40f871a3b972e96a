"""The metrics AWS publishes to CloudWatch for ElastiCache (namespace AWS/ElastiCache), computed
from a node's own stats (engine.NodeStats): redis/valkey INFO, memcached `stats`, and the CPU of
the node's process or container.

Names are AWS's, per engine as AWS publishes them: redis and valkey nodes have CacheHits,
GetTypeCmds, IsMaster...; memcached nodes have GetHits, CmdGet, BytesUsedForCacheItems...
What AWS sums per period (CacheHits, NetworkBytesIn, ...) is a cumulative counter here, as the
engine counts it since the node started (it restarts at 0 with the node): Prometheus' rate()
and increase() turn it into AWS's per-period numbers and handle the restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from engine import NodeStats

GAUGE = "gauge"
COUNTER = "counter"


@dataclass(frozen=True)
class Metric:
    name: str  # AWS's CloudWatch metric name
    kind: str  # GAUGE | COUNTER
    help: str


_HOST = (
    Metric("CPUUtilization", GAUGE, "CPU of the node's process or container over the last interval, "
           "percent of this machine's CPUs (AWS: of the node's host)"),
    Metric("CurrConnections", GAUGE, "client connections now, replicas' excluded"),
    Metric("NewConnections", COUNTER, "connections accepted since the node started"),
    Metric("Evictions", COUNTER, "keys evicted for maxmemory since the node started"),
    Metric("CurrItems", GAUGE, "items (keys) stored"),
    Metric("NetworkBytesIn", COUNTER, "bytes the node has read from the network"),
    Metric("NetworkBytesOut", COUNTER, "bytes the node has written to the network"),
)
REDIS: tuple[Metric, ...] = (
    *_HOST,
    Metric("EngineCPUUtilization", GAUGE, "CPU of the engine's main thread over the last interval, "
           "percent of one core"),
    Metric("CacheHits", COUNTER, "successful key lookups (keyspace_hits)"),
    Metric("CacheMisses", COUNTER, "unsuccessful key lookups (keyspace_misses)"),
    Metric("BytesUsedForCache", GAUGE, "bytes allocated by the engine (used_memory)"),
    Metric("DatabaseMemoryUsagePercentage", GAUGE, "used_memory as a percentage of maxmemory"),
    Metric("ReplicationLag", GAUGE, "replicas: seconds since the primary last heard from this replica"),
    Metric("ReplicationBytes", COUNTER, "primaries with replicas: bytes sent to the replicas"),
    Metric("GetTypeCmds", COUNTER, "calls of read-only commands (commandstats, by the node's COMMAND flags)"),
    Metric("SetTypeCmds", COUNTER, "calls of write commands (commandstats, by the node's COMMAND flags)"),
    Metric("IsMaster", GAUGE, "1 on a primary, 0 on a replica"),
)
MEMCACHED: tuple[Metric, ...] = (
    *_HOST,
    Metric("GetHits", COUNTER, "get requests that found their key"),
    Metric("GetMisses", COUNTER, "get requests that did not find their key"),
    Metric("CmdGet", COUNTER, "get commands"),
    Metric("CmdSet", COUNTER, "set commands"),
    Metric("BytesUsedForCacheItems", GAUGE, "bytes used to store items"),
    Metric("BytesReadIntoMemcached", COUNTER, "bytes read from the network"),
    Metric("BytesWrittenOutFromMemcached", COUNTER, "bytes written to the network"),
    Metric("UnusedMemory", GAUGE, "bytes of the memory limit not used by items"),
)
ALL: dict[str, Metric] = {m.name: m for m in (*REDIS, *MEMCACHED)}

_DB = re.compile(r"^db\d+$")
_SLAVE = re.compile(r"^slave\d+$")


def _num(fields: Mapping[str, str], key: str) -> float | None:
    try:
        return float(fields[key])
    except (KeyError, ValueError):
        return None


def _sum(fields: Mapping[str, str], *keys: str) -> float | None:
    values = [v for v in (_num(fields, k) for k in keys) if v is not None]
    return sum(values) if values else None


def _rate_percent(now: float | None, before: float | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0 or now < before:  # a restart in between
        return None
    return 100.0 * (now - before) / seconds


def replica_lags(fields: Mapping[str, str]) -> dict[tuple[str, int], float]:
    """A primary's INFO replication `slaveN:ip=...,port=...,state=online,offset=...,lag=0` lines
    -> {(ip, port): lag seconds} (lag: since the replica's last acknowledgement, sent every second)."""
    lags: dict[tuple[str, int], float] = {}
    for key, value in fields.items():
        if _SLAVE.match(key):
            parts = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
            try:
                lags[(parts["ip"], int(parts["port"]))] = float(parts["lag"])
            except (KeyError, ValueError):
                continue
    return lags


def node_values(stats: NodeStats, previous: NodeStats | None, cpus: int,
                replication_lag: float | None = None) -> dict[str, float]:
    """AWS's metrics of one node now. Rates (the CPU metrics) need the previous reading of the
    same node and are missing without it; ReplicationLag is the caller's (the primary knows it)."""
    f = stats.fields
    values: dict[str, float | None] = {}
    seconds = stats.at - previous.at if previous is not None else 0.0
    cpu_before = previous.cpu_seconds if previous is not None else None
    cpu = _rate_percent(stats.cpu_seconds, cpu_before, seconds)
    values["CPUUtilization"] = cpu / max(cpus, 1) if cpu is not None else None
    if stats.engine == "memcached":
        values.update({
            "CurrConnections": _num(f, "curr_connections"), "NewConnections": _num(f, "total_connections"),
            "Evictions": _num(f, "evictions"), "CurrItems": _num(f, "curr_items"),
            "NetworkBytesIn": _num(f, "bytes_read"), "NetworkBytesOut": _num(f, "bytes_written"),
            "GetHits": _num(f, "get_hits"), "GetMisses": _num(f, "get_misses"),
            "CmdGet": _num(f, "cmd_get"), "CmdSet": _num(f, "cmd_set"),
            "BytesUsedForCacheItems": _num(f, "bytes"),
            "BytesReadIntoMemcached": _num(f, "bytes_read"), "BytesWrittenOutFromMemcached": _num(f, "bytes_written"),
        })
        limit, used = _num(f, "limit_maxbytes"), _num(f, "bytes")
        values["UnusedMemory"] = limit - used if limit is not None and used is not None else None
        return {k: v for k, v in values.items() if v is not None}
    pf = previous.fields if previous is not None else {}
    main = ("used_cpu_sys_main_thread", "used_cpu_user_main_thread")
    whole = ("used_cpu_sys", "used_cpu_user")
    keys = main if all(k in f for k in main) else whole  # main-thread fields: Redis 6.2+, Valkey
    values["EngineCPUUtilization"] = _rate_percent(_sum(f, *keys), _sum(pf, *keys), seconds)
    role = f.get("role")
    used, limit = _num(f, "used_memory"), _num(f, "maxmemory")
    replicas = _num(f, "connected_slaves") or 0.0
    values.update({
        "CurrConnections": _num(f, "connected_clients"), "NewConnections": _num(f, "total_connections_received"),
        "Evictions": _num(f, "evicted_keys"),
        "CurrItems": sum(_keys(v) for k, v in f.items() if _DB.match(k)),
        "NetworkBytesIn": _sum(f, "total_net_input_bytes", "total_net_repl_input_bytes"),
        "NetworkBytesOut": _sum(f, "total_net_output_bytes", "total_net_repl_output_bytes"),
        "CacheHits": _num(f, "keyspace_hits"), "CacheMisses": _num(f, "keyspace_misses"),
        "BytesUsedForCache": used,
        "DatabaseMemoryUsagePercentage": 100.0 * used / limit if used is not None and limit else None,
        "GetTypeCmds": float(stats.read_calls) if stats.read_calls is not None else None,
        "SetTypeCmds": float(stats.write_calls) if stats.write_calls is not None else None,
        "IsMaster": None if role is None else float(role == "master"),
        "ReplicationLag": replication_lag if role == "slave" else None,
        "ReplicationBytes": _replication_bytes(f) if role == "master" and replicas > 0 else None,
    })
    return {k: v for k, v in values.items() if v is not None}


def _replication_bytes(fields: Mapping[str, str]) -> float | None:
    """Redis 7 counts what it sent its replicas; before, the stream's length stands in."""
    sent = _num(fields, "total_net_repl_output_bytes")
    return sent if sent is not None else _num(fields, "master_repl_offset")


def _keys(keyspace: str) -> float:
    """`keys=3,expires=0,avg_ttl=0` -> 3."""
    for part in keyspace.split(","):
        if part.startswith("keys="):
            try:
                return float(part[5:])
            except ValueError:
                return 0.0
    return 0.0
