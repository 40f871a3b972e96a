"""What keyroute (engine/proxy/keyroute.c, the one endpoint in front of a serverless cache's
shards) costs, beside direct access to one node, in the same run.

Ours: redis-benchmark (SET and GET, 50 clients, random keys over 100,000, plain and x10
pipelined) over TLS to keyroute, which routes each key to one of 3 cluster-enabled redis nodes
of the process runtime (plain text on their private addresses, as the serverless shards are).
Anchor: the same benchmark over TLS straight to one node (a redis node of the same runtime with
TLS "required": nothing in between). The issue's target: >= 0.8x. Sides taken in turns.

Run alone: `.venv/bin/python -m bench --only keyroute [--quick]`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.docker import _benchmark
from bench.lab import Lab, log, start_node
from bench.report import Row, Table, ratio_at_least
from controlplane.tls import LocalCa
from engine import even_ranges
from engine.proxy.keyroute import KeyRoute, KeyRouteConfig, build_keyroute
from engine.runtime.base import NodeConfig
from engine.runtime.process import ProcessRuntime
from engine.security import Credentials, NodeSecurity, TlsFiles
from engine.versions import discover

SHARDS = ("127.0.138.1", "127.0.138.2", "127.0.138.3")
DIRECT = "127.0.138.10"  # the one TLS node of the anchor
ENDPOINT = ("127.0.138.20", 6379)
ADMIN = Credentials("bench-admin", "bench-Admin-1")
CLUSTER = {"cluster-enabled": "yes", "cluster-config-file": "nodes.conf", "cluster-node-timeout": "5000"}


@contextlib.contextmanager
def _setup(directory: Path) -> Iterator[LocalCa]:
    binaries = discover()
    if not binaries.get("redis"):
        raise RuntimeError("redis-server is not installed")
    version = binaries["redis"][0].version
    ca = LocalCa(directory / "ca")
    runtime = ProcessRuntime(directory / "nodes", binaries)
    names: list[str] = []
    proxy: KeyRoute | None = None
    try:
        cert, key = ca.issue([DIRECT])
        direct = NodeConfig("kr-direct", "redis", version, DIRECT, 6379, 256, security=NodeSecurity(
            ADMIN, (), TlsFiles(str(cert), str(key), str(ca.ca_path), "required")))
        names.append(direct.name)
        start_node(runtime, direct)
        for i, host in enumerate(SHARDS):
            config = NodeConfig(f"kr-shard-{i}", "redis", version, host, 6379, 256,
                                settings={**CLUSTER, "cluster-announce-ip": host})
            names.append(config.name)
            start_node(runtime, config)
        runtime.cluster_meet("kr-shard-0", [(h, 6379) for h in SHARDS[1:]])
        for i, slots in enumerate(even_ranges(len(SHARDS))):
            runtime.cluster_add_slots(f"kr-shard-{i}", [slots])
        _wait_ok(runtime)
        cert, key = ca.issue([ENDPOINT[0]])
        proxy = KeyRoute(build_keyroute(directory / "build"), directory / "route", KeyRouteConfig(
            listen=[ENDPOINT], seeds=[(h, 6379) for h in SHARDS], cert_file=cert, key_file=key))
        proxy.start()
        yield ca
    finally:
        if proxy is not None:
            proxy.stop()
        for name in names:
            with contextlib.suppress(Exception):
                runtime.remove(name)
        runtime.close()


def _wait_ok(runtime: ProcessRuntime) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        views = [runtime.cluster_view(f"kr-shard-{i}") for i in range(len(SHARDS))]
        if all(v.state_ok and v.known_nodes == len(SHARDS) for v in views):
            return
        time.sleep(0.05)
    raise RuntimeError("the bench's cluster did not settle")


def run(lab: Lab) -> list[Table]:
    requests = 20_000 if lab.quick else 100_000
    rounds = 1 if lab.quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-keyroute-") as tmp, _setup(Path(tmp)) as ca:
        tls = ("--tls", "--cacert", str(ca.ca_path), "-r", "100000")
        sides = {"direct": (DIRECT, 6379), "keyroute": ENDPOINT}
        results: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
        for r in range(rounds):
            for pipeline in (1, 10):
                for side, (host, port) in sides.items():
                    log(f"keyroute: round {r + 1}/{rounds}, {side}, pipeline {pipeline}")
                    count = requests * (10 if pipeline > 1 else 1)
                    for test, rate in _benchmark(host, count, pipeline, port=port, extra=tls).items():
                        results[side].setdefault(f"{test} -P {pipeline}", []).append(rate)
    table = Table(f"redis-benchmark over TLS, requests/s ({requests} requests, x10 pipelined; 50 clients; "
                  f"random keys; best of {rounds}, in turns)", "one TLS node, direct")
    for test in results["direct"]:
        table.add(Row(f"{test}: keyroute over 3 shards", max(results["keyroute"][test]),
                      max(results["direct"][test]), "req/s", target=ratio_at_least(0.8),
                      note="anchor: one redis node with TLS, nothing in between"))
    table.notes.append("keyroute terminates TLS and reaches the shards in plain text on loopback")
    return [table]

