"""A node's own counters, raw, as the engine and the OS name them: redis/valkey `INFO all` and
commandstats summed by the node's `COMMAND` flags, memcached `stats`, and the CPU its process
(/proc/<pid>/stat) or container (its cgroup) has used. What they mean to anyone else is the
caller's business."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.access import Reach
from engine.adapters import adapter_for
from engine.adapters import redis as redis_adapter
from engine.runtime.base import NodeConfig, NodeStats

__all__ = ["StatsReader", "cgroup_cpu_seconds", "command_flags", "proc_cpu_seconds",
           "sum_calls"]

def proc_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    """User + system CPU seconds of a process, its reaped children included (a redis fork for a
    save); None where /proc has no such process (macOS, another pid namespace)."""
    try:
        # The command name may hold spaces and parentheses: fields start after the last ")".
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def cgroup_cpu_seconds(pid: int, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup")
                       ) -> float | None:
    """CPU seconds of the cgroup a process is in (a container: every process in it): cgroup v2's
    cpu.stat usage_usec, or v1's cpuacct.usage. None where the files cannot be read."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        rel = path.lstrip("/")
        if controllers == "" and (cgroup_root / "cgroup.controllers").exists():
            try:
                for stat in (cgroup_root / rel / "cpu.stat").read_text().splitlines():
                    key, _, value = stat.partition(" ")
                    if key == "usage_usec":
                        return int(value) / 1e6
            except (OSError, ValueError):
                return None
        if "cpuacct" in controllers.split(","):
            for mount in (controllers, "cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
                try:
                    return int((cgroup_root / mount / rel / "cpuacct.usage").read_text()) / 1e9
                except (OSError, ValueError):
                    continue
    return None


def command_flags(reply: redis_adapter.RespReply) -> dict[str, frozenset[str]]:
    """COMMAND's reply -> {name: flags}, subcommands ("config|set") included."""
    table: dict[str, frozenset[str]] = {}
    entries = reply if isinstance(reply, list) else []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) < 3:
            continue
        name, flags = entry[0], entry[2]
        if isinstance(name, bytes | str) and isinstance(flags, list):
            text = name.decode() if isinstance(name, bytes) else name
            table[text.lower()] = frozenset(f.decode() if isinstance(f, bytes) else str(f) for f in flags)
        if len(entry) >= 10 and isinstance(entry[9], list):  # Redis 7: subcommands, same shape
            table.update(command_flags(entry[9]))
    return table


def sum_calls(fields: Mapping[str, str], flags: Mapping[str, frozenset[str]]) -> tuple[int, int]:
    """(calls of readonly commands, calls of write commands) from INFO commandstats lines
    `cmdstat_get:calls=3,usec=...`."""
    reads = writes = 0
    for key, value in fields.items():
        if not key.startswith("cmdstat_"):
            continue
        command = key[len("cmdstat_"):].lower()
        calls = next((int(p[6:]) for p in value.split(",") if p.startswith("calls=")), 0)
        kind = flags.get(command) or flags.get(command.split("|", 1)[0], frozenset())
        if "readonly" in kind:
            reads += calls
        elif "write" in kind:
            writes += calls
    return reads, writes


def _engine_cpu(engine: str, fields: Mapping[str, str]) -> float | None:
    """The engine's own rusage: where the OS's view of the process is out of reach."""
    keys = ("rusage_user", "rusage_system") if engine == "memcached" else (
        "used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children")
    try:
        return sum(float(fields[k]) for k in keys if k in fields) if keys[0] in fields else None
    except ValueError:
        return None


class StatsReader:
    """One per runtime: reads nodes' stats, and keeps the flags of the commands each engine
    version's nodes were seen calling (the same for every node of a version)."""

    def __init__(self) -> None:
        self._flags: dict[tuple[str, str], dict[str, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def read(self, config: NodeConfig, reach: Reach, timeout: float, cpu: Callable[[], float | None]
             ) -> NodeStats | None:
        """The node's stats (read where `reach` says), `cpu()` its OS-level CPU seconds; None
        when it does not answer."""
        read_calls = write_calls = None
        try:
            fields = adapter_for(config.engine).stats(reach, timeout)
            if config.engine != "memcached":
                flags = self._command_flags(config, fields, timeout, reach)
                read_calls, write_calls = sum_calls(fields, flags)
        except (OSError, ValueError, redis_adapter.RespError):
            return None
        seconds = cpu()
        return NodeStats(engine=config.engine, fields=fields,
                         cpu_seconds=seconds if seconds is not None else _engine_cpu(config.engine, fields),
                         at=time.monotonic(), read_calls=read_calls, write_calls=write_calls)

    def _command_flags(self, config: NodeConfig, fields: Mapping[str, str], timeout: float, reach: Reach
                       ) -> dict[str, frozenset[str]]:
        """The flags of the commands the node's commandstats name, from `COMMAND INFO` of those not
        known yet for its version: a few small replies over a node's life, never the whole ~100 KB
        COMMAND table (its parse held the GIL for ~35 ms and stalled the API while nodes started)."""
        key = (config.engine, config.version)
        called = {k[len("cmdstat_"):].split("|", 1)[0].lower() for k in fields if k.startswith("cmdstat_")}
        with self._lock:
            table = self._flags.setdefault(key, {})
            unknown = sorted(called - table.keys())
        if unknown:
            found = command_flags(redis_adapter.execute(reach, "COMMAND", "INFO", *unknown, timeout=timeout))
            with self._lock:
                table.update(found)
                for name in unknown:
                    table.setdefault(name, frozenset())  # not a command this version knows: asked once
        with self._lock:
            return dict(table)
