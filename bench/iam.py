"""What the IAM authenticator (engine/proxy/iam_auth.py) costs beside direct access to the same
node, measured in the same run, the two sides in turns.

redis-benchmark (SET and GET, 50 clients, plain and x10 pipelined) logs in as the same ACL user
both ways: through the authenticator with an IAM token (made as AWS's guides make it, verified
by the control plane's verifier), and directly on the node with the user's internal password.
Twice: TLS on both sides (a TLS "required" node, the authenticator terminating the client's TLS
and speaking TLS to the node), and plain text. The issue's target: >= 0.9x of direct access.

Run alone: `.venv/bin/python -m bench --only iam [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench.docker import _benchmark
from bench.lab import Lab, log, proc_cpu, start_node
from bench.report import Row, Table, ratio_at_least
from controlplane.auth.iam_signer import iam_token
from controlplane.auth.iam_token import CacheTarget, IamTokenVerifier, iam_authenticator
from controlplane.auth.keys import AccessKey
from controlplane.state.users import User, UserSpec
from controlplane.tls import LocalCa
from engine.proxy import ProxyHub
from engine.proxy.iam_auth import IamBackend, iam_password, with_iam_password
from engine.runtime.base import NodeConfig
from engine.runtime.process import ProcessRuntime
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles
from engine.versions import discover

HOSTS = {"plain": "127.0.137.1", "tls": "127.0.137.2"}
FRONT_PORT = 6380
SPLIT_PORT = 6381  # TLS to the client, plain text to the node
ADMIN = Credentials("bench-admin", "bench-Admin-1")
USER = "bench-iam"
ACCOUNT = "123456789012"
CACHE = CacheTarget("bench-cache", ACCOUNT, "us-east-1")


def _verifier() -> IamTokenVerifier:
    record = User(account=ACCOUNT, region="us-east-1", id=USER, created_at=datetime.now(UTC),
                  spec=UserSpec(user_name=USER, engine="redis", access_string="on ~* +@all", rules=[],
                                minimum_engine_version="6.0", auth_type="iam"))
    return IamTokenVerifier({"testing": AccessKey("testing", "testing", ACCOUNT, "testing")},
                            lambda account, region, uid: record if uid == USER else None)


@contextlib.contextmanager
def _setup(directory: Path, loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> Iterator[LocalCa]:
    """A plain and a TLS-required redis node with the IAM user on them, and an authenticator in
    front of each (on the node's address, port 6380)."""
    binaries = discover()
    if not binaries.get("redis"):
        raise RuntimeError("redis-server is not installed")
    ca = LocalCa(directory / "ca")
    runtime = ProcessRuntime(directory / "nodes", binaries)
    verifier = _verifier()
    user = with_iam_password(ADMIN, AclUser(USER, ("on", "~*", "&*", "+@all")))
    try:
        with ProxyHub(call_timeout=10, loop_factory=loop_factory) as hub:
            for kind, host in HOSTS.items():
                config = NodeConfig(f"iam-{kind}", "redis", binaries["redis"][0].version, host, 6379, 256)
                server_tls, backend = None, IamBackend(host, 6379)
                files = None
                if kind == "tls":
                    cert, key = ca.issue([host])
                    files = TlsFiles(str(cert), str(key), str(ca.ca_path), "required")
                    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    server_tls.load_cert_chain(cert, key)
                    backend = IamBackend(host, 6379, ssl.create_default_context(cafile=str(ca.ca_path)))
                runtime.start(dataclasses.replace(config, security=NodeSecurity(ADMIN, (user,), files)))
                deadline = time.monotonic() + 10
                while not runtime.probe(config.name, 0.5).ok:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node {config.name} did not start")
                    time.sleep(0.005)
                hub.add_iam_authenticator(kind, host, FRONT_PORT, iam_authenticator(
                    verifier, CACHE, host, FRONT_PORT, backend, ADMIN, server_tls=server_tls))
                if server_tls is not None:  # TLS for the client, plain text to the plain node
                    plain_node = IamBackend(HOSTS["plain"], 6379)
                    hub.add_iam_authenticator("tls-plain", host, SPLIT_PORT, iam_authenticator(
                        verifier, CACHE, host, SPLIT_PORT, plain_node, ADMIN, server_tls=server_tls))
            yield ca
    finally:
        for kind in HOSTS:
            with contextlib.suppress(Exception):
                runtime.remove(f"iam-{kind}")
        runtime.close()


LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop,
                                                            "uvloop": uvloop.new_event_loop}


def run(lab: Lab) -> list[Table]:
    return [_haproxy(lab), *_asyncio(lab)]


HAPROXY_HOSTS = {"direct": "127.0.137.3", "front": "127.0.137.4"}


def _haproxy(lab: Lab) -> Table:
    """The front the process runtime puts before a node with IAM users where HAProxy is installed
    (engine/proxy/iam_haproxy.py: TLS and the relay in C, the login step in Lua), against direct
    TLS to a like node without IAM users, as the same ACL user, in turns."""
    requests = 20_000 if lab.quick else 100_000
    rounds = 1 if lab.quick else 3
    binaries = discover()
    results: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, list[float]] = {}  # "<side> -P n" -> CPU µs per request of the node (+ its front)
    user = with_iam_password(ADMIN, AclUser(USER, ("on", "~*", "&*", "+@all")))
    with tempfile.TemporaryDirectory(prefix="bench-iam-haproxy-") as tmp:
        ca = LocalCa(Path(tmp) / "ca")
        runtime = ProcessRuntime(Path(tmp) / "nodes", binaries)
        runtime.set_iam_verifier(lambda realm, uid, token: realm == "bench" and _verifier().verify(CACHE, uid, token))
        try:
            for side, host in HAPROXY_HOSTS.items():
                cert, key = ca.issue([host])
                security = NodeSecurity(ADMIN, (user,), TlsFiles(str(cert), str(key), str(ca.ca_path), "required"),
                                        iam_realm="bench" if side == "front" else None)
                config = NodeConfig(f"iam-{side}", "redis", binaries["redis"][0].version, host, 6379, 256,
                                    security=security)
                start_node(runtime, config)
            tls = ("--tls", "--cacert", str(ca.ca_path))
            pids = {side: _pids(runtime, f"iam-{side}", tmp if side == "front" else None) for side in HAPROXY_HOSTS}

            def measure(side: str, count: int, pipeline: int) -> dict[str, float]:
                password = iam_token(CACHE.cache_id, USER) if side == "front" else iam_password(ADMIN, USER)
                before = [proc_cpu(pid) or 0.0 for pid in pids[side]]
                rates = _benchmark(HAPROXY_HOSTS[side], count, pipeline, extra=(*tls, "--user", USER, "-a", password))
                used = sum(proc_cpu(pid) or 0.0 for pid in pids[side]) - sum(before)
                cpu.setdefault(f"{side} -P {pipeline}", []).append(used / (2 * count) * 1e6)  # SET and GET
                return rates

            for side in HAPROXY_HOSTS:  # warm-up: connections, TLS session caches, page faults
                measure(side, 2_000, 1)
            cpu.clear()
            for r in range(rounds):
                for pipeline in (1, 10):
                    for side in HAPROXY_HOSTS:
                        log(f"iam: haproxy front, round {r + 1}/{rounds}, {side}, pipeline {pipeline}")
                        rates = measure(side, requests * (10 if pipeline > 1 else 1), pipeline)
                        for test, rate in rates.items():
                            results.setdefault(side, {}).setdefault(f"{test} -P {pipeline}", []).append(rate)
        finally:
            for side in HAPROXY_HOSTS:
                with contextlib.suppress(Exception):
                    runtime.remove(f"iam-{side}")
            runtime.close()
    table = Table(f"redis-benchmark requests/s over TLS through the HAProxy IAM front ({requests} requests, x10 "
                  f"pipelined; 50 clients; median of {rounds} after a warm-up, in turns)",
                  "direct TLS to a like node, same user")
    for test, direct in results["direct"].items():
        table.add(Row(f"{test}: TLS, HAProxy IAM front", statistics.median(results["front"][test]),
                      statistics.median(direct), "req/s", target=ratio_at_least(0.9),
                      note="anchor: direct TLS to a node, same run"))
    for pipeline in (1, 10):
        front_cpu, direct_cpu = (statistics.median(cpu[f"{side} -P {pipeline}"]) for side in ("front", "direct"))
        table.add(Row(f"server-side CPU per request -P {pipeline}: node + HAProxy front", front_cpu, direct_cpu, "µs",
                      note="anchor: the node alone, direct TLS (redis-benchmark's own CPU is the same both ways)"))
    table.notes.append("the front: HAProxy (1 thread) terminates TLS, checks the token once per connection "
                       "(Lua + the engine's verifier socket), relays in C to the node over its owner-only "
                       "unix socket")
    table.notes.append("on 2 CPUs the client, the node and the front share 2 cores: throughput follows the CPU "
                       "a request costs all of them, and the front's hop is a third process per request")
    return table


def _pids(runtime: ProcessRuntime, node: str, workdir: str | None) -> list[int]:
    """The node's process, and the HAProxy fronts started under `workdir` (the front's side)."""
    info = runtime.inspect(node)
    pids = [info.pid] if info is not None and info.pid is not None else []
    if workdir is None:
        return pids
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"haproxy") and any(workdir.encode() in a for a in argv):
                pids.append(int(proc.name))
    return pids


def _asyncio(lab: Lab) -> list[Table]:
    requests = 20_000 if lab.quick else 100_000
    rounds = 1 if lab.quick else 3
    results: dict[str, dict[str, list[float]]] = {}
    for loop_name, loop_factory in LOOPS.items():
        with tempfile.TemporaryDirectory(prefix="bench-iam-") as tmp, _setup(Path(tmp), loop_factory) as ca:
            tls = ("--tls", "--cacert", str(ca.ca_path))
            # label -> (host, port, redis-benchmark options, through the authenticator)
            runs = {"plain direct": (HOSTS["plain"], 6379, (), False),
                    "plain authenticator": (HOSTS["plain"], FRONT_PORT, (), True),
                    "tls direct": (HOSTS["tls"], 6379, tls, False),
                    "tls authenticator": (HOSTS["tls"], FRONT_PORT, tls, True),
                    "tls-plain authenticator": (HOSTS["tls"], SPLIT_PORT, tls, True)}
            for r in range(rounds):
                for pipeline in (1, 10):
                    for label, (host, port, extra, front) in runs.items():
                        log(f"iam: {loop_name} hub, round {r + 1}/{rounds}, {label}, pipeline {pipeline}")
                        # A token per run: one lives 15 minutes.
                        password = iam_token(CACHE.cache_id, USER) if front else iam_password(ADMIN, USER)
                        count = requests * (10 if pipeline > 1 else 1)
                        rates = _benchmark(host, count, pipeline, port=port,
                                           extra=(*extra, "--user", USER, "-a", password))
                        for test, rate in rates.items():
                            results.setdefault(f"{loop_name} {label}", {}).setdefault(
                                f"{test} -P {pipeline}", []).append(rate)
    table = Table(f"redis-benchmark requests/s through the IAM authenticator ({requests} requests, x10 pipelined; "
                  f"50 clients; best of {rounds}, in turns)", "direct access to the same node as the same user")
    best = {side: {test: max(rates) for test, rates in tests.items()} for side, tests in results.items()}
    for loop_name in LOOPS:
        for kind, anchor in (("tls", "tls"), ("tls-plain", "tls"), ("plain", "plain")):
            direct = best[f"{loop_name} {anchor} direct"]
            for test in direct:
                table.add(Row(f"{test}: {kind}, authenticator on {loop_name}",
                              best[f"{loop_name} {kind} authenticator"][test], direct[test], "req/s",
                              target=ratio_at_least(0.9), note=f"anchor: {anchor} node direct, same user, same run"))
    table.notes.append("best of the rounds: on a shared 2-CPU machine other work only ever lowers a run")
    table.notes.append("tls-plain: the authenticator terminates the client's TLS and speaks plain text to a node's "
                       "private port (as the TLS-preferred node has one): one TLS hop instead of two")
    table.notes.append("each redis-benchmark connection logs in: through the authenticator a token is "
                       "verified (SigV4) per connection, 50 per run")
    table.notes.append("the authenticator runs in this process (the ProxyHub's loop thread), redis-benchmark "
                       "and the node in theirs: 2 CPUs for all three")
    return [table]
