"""What TLS costs on a node, and what TLS mode "preferred" adds, each beside its anchor
measured in the same run.

(i) Data path: redis-benchmark (SET and GET, 50 clients, plain and x10 pipelined) against nodes
of the process runtime: TLS "required" (the node's own TLS port, nothing in between) beside the
same node in plain text; TLS "preferred" (the sniffing forwarder, engine/proxy/sniff.py, on the
port) for plain-text clients beside the plain node, and for TLS clients beside the required node.
The anchor the issue names: a bare redis-server started directly (the same binary, the config
file our runtime renders for the TLS-required node, so the same tls-* settings, certificate and
memory settings, without the runtime's ACL file and replication user) beside the required node,
in the same run, in turns. Target: >= 0.95x.
(ii) Probe: NodeRuntime.probe (a new connection each time: TCP, TLS handshake, AUTH as the admin
user pipelined with PING and INFO) on a TLS node beside a plain one. It runs every 200 ms per node.

Run alone: `.venv/bin/python -m bench --only tls [--quick]`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.docker import _benchmark
from bench.lab import Lab, _stop_process, log, start_node
from bench.report import Row, Table, median, ours_below, ratio_at_least
from controlplane.tls import LocalCa
from engine.access import Reach, TlsContexts
from engine.adapters.redis import probe, render_config
from engine.runtime.base import NodeConfig
from engine.runtime.process import ProcessRuntime
from engine.security import Credentials, NodeSecurity, TlsFiles, TlsMode
from engine.versions import discover

HOSTS = {"plain": "127.0.136.1", "required": "127.0.136.2", "preferred": "127.0.136.3"}
BARE = "127.0.136.4"  # the bare redis-server with the required node's TLS settings
ADMIN = Credentials("bench-admin", "bench-Admin-1")
# What the runtime adds for itself, left out of the bare server's copy of the node's config file.
RUNTIME_ONLY = ("aclfile", "masteruser", "masterauth", "supervised")


@contextlib.contextmanager
def _nodes(directory: Path) -> Iterator[tuple[ProcessRuntime, LocalCa]]:
    """A plain, a TLS-required and a TLS-preferred redis node (no customer users: clients need
    no AUTH, so only TLS and the forwarder differ), and the bare server beside the required one."""
    binaries = discover()
    if not binaries.get("redis"):
        raise RuntimeError("redis-server is not installed")
    ca = LocalCa(directory / "ca")
    runtime = ProcessRuntime(directory / "nodes", binaries)
    stack = contextlib.ExitStack()
    try:
        for name, host in HOSTS.items():
            config = NodeConfig(f"tls-{name}", "redis", binaries["redis"][0].version, host, 6379, 256)
            if name != "plain":
                mode: TlsMode = "required" if name == "required" else "preferred"
                # The required node and the bare server share one certificate (both addresses).
                cert, key = ca.issue([host, BARE] if name == "required" else [host])
                config = dataclasses.replace(config, security=NodeSecurity(
                    ADMIN, (), TlsFiles(str(cert), str(key), str(ca.ca_path), mode)))
            if name == "required":
                stack.enter_context(_bare(config, binaries["redis"][0].path, directory / "bare", ca))
            start_node(runtime, config)
        yield runtime, ca
    finally:
        for name in HOSTS:
            with contextlib.suppress(Exception):
                runtime.remove(f"tls-{name}")
        runtime.close()
        stack.close()


@contextlib.contextmanager
def _bare(config: NodeConfig, binary: Path, directory: Path, ca: LocalCa) -> Iterator[None]:
    """A redis-server started directly on BARE with the config file the runtime renders for
    `config` (minus RUNTIME_ONLY), until the block ends."""
    directory.mkdir(parents=True)
    text = render_config(dataclasses.replace(config, name="bare", host=BARE), directory)
    lines = [line for line in text.splitlines() if line.split(" ", 1)[0] not in RUNTIME_ONLY]
    (directory / "redis.conf").write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen([str(binary), str(directory / "redis.conf")], cwd=directory, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        reach = Reach(BARE, 6379, tls=TlsContexts().client(str(ca.ca_path)))
        deadline = time.monotonic() + 10
        while not probe(reach, 0.5).ok:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the bare redis-server on {BARE} did not start")
            time.sleep(0.01)
        yield
    finally:
        _stop_process(proc, signal.SIGTERM)


def _probe_ms(runtime: ProcessRuntime, name: str, count: int) -> float:
    samples = []
    for _ in range(count):
        result = runtime.probe(name, 1.0)
        if not result.ok:
            raise RuntimeError(f"probe of {name} failed: {result.error}")
        samples.append(result.latency_ms)
    return median(samples)


def run(lab: Lab) -> list[Table]:
    requests = 20_000 if lab.quick else 100_000
    rounds = 1 if lab.quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp, _nodes(Path(tmp)) as (runtime, ca):
        tls = ("--tls", "--cacert", str(ca.ca_path))
        runs = {"plain": (HOSTS["plain"], ()), "required": (HOSTS["required"], tls), "bare tls": (BARE, tls),
                "preferred plain": (HOSTS["preferred"], ()), "preferred tls": (HOSTS["preferred"], tls)}
        results: dict[str, dict[str, list[float]]] = {kind: {} for kind in runs}
        for r in range(rounds):
            for pipeline in (1, 10):
                for kind, (host, extra) in runs.items():
                    log(f"tls data path: round {r + 1}/{rounds}, {kind}, pipeline {pipeline}")
                    count = requests * (10 if pipeline > 1 else 1)
                    for test, rate in _benchmark(host, count, pipeline, extra=extra).items():
                        results[kind].setdefault(f"{test} -P {pipeline}", []).append(rate)
        probes = 50 if lab.quick else 300
        probe_tls = _probe_ms(runtime, "tls-required", probes)
        probe_plain = _probe_ms(runtime, "tls-plain", probes)
    table = Table(f"redis-benchmark requests/s ({requests} requests, x10 pipelined; 50 clients; best of {rounds}, "
                  "interleaved), and the engine's probe", "the same without TLS / without the forwarder")
    best = {kind: {test: max(rates) for test, rates in tests.items()} for kind, tests in results.items()}
    for test in best["plain"]:
        table.add(Row(f"{test}: TLS required node vs bare redis-server", best["required"][test],
                      best["bare tls"][test], "req/s", target=ratio_at_least(0.95),
                      note="anchor: bare redis-server, same binary, TLS settings and certificate"))
    for test in best["plain"]:
        table.add(Row(f"{test}: TLS required (node's own port)", best["required"][test], best["plain"][test],
                      "req/s", note="anchor: plain node"))
    for test in best["plain"]:
        table.add(Row(f"{test}: preferred, plain client (forwarder)", best["preferred plain"][test],
                      best["plain"][test], "req/s", note="anchor: plain node"))
    for test in best["plain"]:
        table.add(Row(f"{test}: preferred, TLS client (forwarder)", best["preferred tls"][test],
                      best["required"][test], "req/s", note="anchor: TLS required node"))
    table.add(Row("probe (connect, TLS, AUTH + PING + INFO): median", probe_tls, probe_plain, "ms",
                  target=ours_below(5, "ms"), note="anchor: plain node's probe"))
    table.notes.append("best of the rounds: on a shared 2-CPU machine other work only ever lowers a run")
    table.notes.append("preferred is AWS's transitional mode; required has nothing between client and node")
    return [table]
