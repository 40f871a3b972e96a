"""engine/stats.py's readers of what the OS and the engines report, on files and replies made here."""

from __future__ import annotations

import os
from pathlib import Path

from engine.stats import cgroup_cpu_seconds, command_flags, proc_cpu_seconds, sum_calls


def _proc(tmp_path: Path, pid: int, stat: str = "", cgroup: str = "") -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    if stat:
        (proc / str(pid) / "stat").write_text(stat)
    if cgroup:
        (proc / str(pid) / "cgroup").write_text(cgroup)
    return proc


def test_proc_cpu_counts_user_system_and_reaped_children(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    # A command name with spaces and a parenthesis: fields are counted after the last ")".
    stat = f"42 (redis-server ) x) S 1 42 42 0 -1 4194560 100 0 0 0 {3 * tick} {tick} {tick} 0 20 0 4 0\n"
    assert proc_cpu_seconds(42, _proc(tmp_path, 42, stat=stat)) == 5.0
    assert proc_cpu_seconds(43, tmp_path / "proc") is None


def test_cgroup_cpu_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    (v1 / "cpuacct" / "docker" / "abc").mkdir(parents=True)
    (v1 / "cpuacct" / "docker" / "abc" / "cpuacct.usage").write_text("2500000000\n")
    proc = _proc(tmp_path / "a", 7, cgroup="3:cpuset:/docker/abc\n2:cpuacct:/docker/abc\n1:cpu:/docker/abc\n")
    assert cgroup_cpu_seconds(7, proc, v1) == 2.5
    v2 = tmp_path / "v2"
    (v2 / "system.slice" / "docker-abc.scope").mkdir(parents=True)
    (v2 / "cgroup.controllers").write_text("cpu io memory\n")
    (v2 / "system.slice" / "docker-abc.scope" / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1\n")
    proc = _proc(tmp_path / "b", 8, cgroup="0::/system.slice/docker-abc.scope\n")
    assert cgroup_cpu_seconds(8, proc, v2) == 1.5
    assert cgroup_cpu_seconds(9, proc, v2) is None


def test_commandstats_summed_by_the_nodes_own_flags() -> None:
    reply = [
        [b"get", 2, ["readonly", "fast"], 1, 1, 1, [], [], [], []],
        [b"set", -3, ["write", "denyoom"], 1, 1, 1, [], [], [], []],
        [b"config", -2, [], 0, 0, 0, [], [], [], [[b"config|set", -4, ["admin"], 0, 0, 0]]],
        [b"ping", -1, ["fast"], 0, 0, 0],
    ]
    flags = command_flags(reply)
    assert flags["config|set"] == frozenset({"admin"}) and "readonly" in flags["get"]
    fields = {"cmdstat_get:": "", "cmdstat_get": "calls=7,usec=9,usec_per_call=1.3",
              "cmdstat_set": "calls=3,usec=4", "cmdstat_config|set": "calls=2,usec=1",
              "cmdstat_ping": "calls=50,usec=1", "keyspace_hits": "7"}
    assert sum_calls(fields, flags) == (7, 3)
