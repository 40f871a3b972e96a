"""DescribeCacheClusters listing 50 clusters: elasticache-local against moto_server.

Both servers hold the same 50 redis cache clusters (on ours, 50 real nodes, all `available`
before anything is measured). (a) The server alone: the same form body POSTed raw over one
keep-alive connection, the response read but not parsed. (b) End to end through boto3, which
adds signing and XML parsing on the client; the client's parse of each server's own response is
timed too, because it is most of an end-to-end call and it grows with the response.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.lab import CpuWatch, Lab, RawClient, Server, log, proc_cpu, wait_until
from bench.report import Row, Table, median, ours_below, percentile, ratio_at_least

CLUSTERS = 50
BODY = b"Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true"
MAX_CALLS = 200_000
READY_TIMEOUT = 180.0


@dataclass
class Run:
    calls: int
    seconds: float
    latencies: list[float]  # seconds
    server_cpu: float | None = None  # seconds the server process used during the run
    response: bytes = b""
    connects: int = 0

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1e3

    @property
    def cpu_per_call_ms(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / self.calls * 1e3


SLICES = 8  # ours and moto take turns, so both see the same background load on a shared machine


class Loop:
    """One server's calls, measured in slices taken in turn with the other server's."""

    def __init__(self, call: Callable[[], object], pid: int) -> None:
        self.call = call
        self.pid = pid
        self.run = Run(0, 0.0, [], 0.0)

    def warm(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.call()

    def slice(self, seconds: float) -> None:
        run = self.run
        cpu_before = proc_cpu(self.pid)
        start = now = time.perf_counter()
        end = start + seconds
        while now < end and run.calls < MAX_CALLS:
            self.call()
            after = time.perf_counter()
            run.latencies.append(after - now)
            run.calls += 1
            now = after
        run.seconds += now - start
        cpu_after = proc_cpu(self.pid)
        if run.server_cpu is not None and cpu_before is not None and cpu_after is not None:
            run.server_cpu += cpu_after - cpu_before
        else:
            run.server_cpu = None


def take_turns(loops: list[Loop], seconds: float, warmup: float) -> None:
    """Warm each up, then `seconds` of calls each, in SLICES alternating slices."""
    for loop in loops:
        loop.warm(warmup)
    for i in range(SLICES):
        for loop in loops if i % 2 == 0 else reversed(loops):
            loop.slice(seconds / SLICES)


def _pid(server: Server) -> int:
    assert server.proc is not None
    return server.proc.pid


def raw_runs(servers: list[Server], seconds: float, warmup: float) -> list[Run]:
    raws = [s.raw() for s in servers]
    last: dict[str, bytes] = {}

    def caller(server: Server, raw: RawClient) -> Callable[[], None]:
        def call() -> None:
            status, data = raw.post(BODY)
            if status != 200:
                raise RuntimeError(f"{server.name}: DescribeCacheClusters answered HTTP {status}: "
                                   f"{data[:300]!r}")
            last[server.name] = data
        return call

    try:
        loops = [Loop(caller(s, r), _pid(s)) for s, r in zip(servers, raws, strict=True)]
        for loop in loops:
            loop.call()
        before = [r.connects for r in raws]
        take_turns(loops, seconds, warmup)
        for loop, server, raw, connects in zip(loops, servers, raws, before, strict=True):
            loop.run.connects = raw.connects - connects
            loop.run.response = last[server.name]
        return [loop.run for loop in loops]
    finally:
        for raw in raws:
            raw.close()


def boto3_runs(servers: list[Server], seconds: float, warmup: float) -> list[Run]:
    def caller(client: Any) -> Callable[[], object]:
        return lambda: client.describe_cache_clusters(ShowCacheNodeInfo=True)

    loops = []
    for server in servers:
        client = server.client()
        got = client.describe_cache_clusters(ShowCacheNodeInfo=True)["CacheClusters"]
        if len(got) != CLUSTERS:
            raise RuntimeError(f"{server.name}: boto3 sees {len(got)} clusters, expected {CLUSTERS}")
        loops.append(Loop(caller(client), _pid(server)))
    take_turns(loops, seconds, warmup)
    return [loop.run for loop in loops]


def botocore_parse_ms(body: bytes) -> float:
    """What botocore's own Query parser takes for this response body (best of 5)."""
    import botocore.session
    from botocore.parsers import QueryParser

    shape = (botocore.session.get_session().get_service_model("elasticache")
             .operation_model("DescribeCacheClusters").output_shape)
    parser = QueryParser()
    response = {"body": body, "headers": {}, "status_code": 200}

    def parse() -> object:
        return parser.parse(response, shape)  # type: ignore[arg-type]  # output_shape is set here

    timer = timeit.Timer(parse)
    number, _ = timer.autorange()
    return min(timer.repeat(5, number)) / number * 1e3


def populate(server: Server, wait_available: bool) -> None:
    client = server.client()
    log(f"{server.name}: creating {CLUSTERS} redis cache clusters")
    for i in range(CLUSTERS):
        client.create_cache_cluster(CacheClusterId=f"bench-describe-{i:02d}", Engine="redis",
                                    CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    raw = server.raw()
    try:
        def all_available() -> bool:
            statuses = raw.statuses()
            return len(statuses) == CLUSTERS and all(s == "available" for s in statuses)

        took = wait_until(f"{server.name}: {CLUSTERS} clusters available", all_available,
                          READY_TIMEOUT if wait_available else 10.0, 0.05)
        log(f"{server.name}: all {CLUSTERS} available {took:.1f} s after the last create")
    finally:
        raw.close()


def run(lab: Lab) -> list[Table]:
    seconds, warmup = (0.5, 0.2) if lab.quick else (2.0, 0.5)
    ours, moto = lab.ours, lab.moto
    lab.reset()
    try:
        populate(ours, wait_available=True)
        populate(moto, wait_available=False)
        log("describe: raw POST")
        watch = CpuWatch(_pid(ours), _pid(moto))
        raw_ours, raw_moto = raw_runs([ours, moto], seconds, warmup)
        raw_cpu = watch.summary()
        log("describe: boto3")
        watch = CpuWatch(_pid(ours), _pid(moto))
        b_ours, b_moto = boto3_runs([ours, moto], seconds, warmup)
        e2e_cpu = watch.summary()
    finally:
        log("describe: resetting (stops the 50 nodes)")
        lab.reset()
    parse_ours, parse_moto = botocore_parse_ms(raw_ours.response), botocore_parse_ms(raw_moto.response)

    raw = Table(f"DescribeCacheClusters, {CLUSTERS} clusters, raw POST on one keep-alive connection "
                f"({seconds:g} s each, in {SLICES} alternating slices)", "moto")
    raw.add(Row("calls/s", raw_ours.rate, raw_moto.rate, target=ratio_at_least(10)))
    raw.add(Row("p50", raw_ours.p(50), raw_moto.p(50), "ms"))
    raw.add(Row("p99", raw_ours.p(99), raw_moto.p(99), "ms", target=ours_below(5, "ms")))
    raw.add(Row("server CPU per call", raw_ours.cpu_per_call_ms, raw_moto.cpu_per_call_ms, "ms"))
    raw.add(Row("response", len(raw_ours.response), len(raw_moto.response), "bytes"))
    closes = " (moto_server closes the connection after every response)" if raw_moto.connects else ""
    raw.notes.append(f"calls measured: ours {raw_ours.calls}, moto {raw_moto.calls}; TCP connects during "
                     f"the run: ours {raw_ours.connects}, moto {raw_moto.connects}{closes}")
    raw.notes.append(raw_cpu)

    e2e = Table(f"DescribeCacheClusters, {CLUSTERS} clusters, boto3 describe_cache_clusters"
                f"(ShowCacheNodeInfo=True) ({seconds:g} s each, in {SLICES} alternating slices)", "moto")
    e2e.add(Row("calls/s", b_ours.rate, b_moto.rate, target=ratio_at_least(2)))
    e2e.add(Row("p50", median(b_ours.latencies) * 1e3, median(b_moto.latencies) * 1e3, "ms"))
    e2e.add(Row("p99", b_ours.p(99), b_moto.p(99), "ms"))
    e2e.add(Row("of which botocore parses the body", parse_ours, parse_moto, "ms"))
    moto_e2e, ours_client = median(b_moto.latencies) * 1e3, median(b_ours.latencies) * 1e3 - raw_ours.p(50)
    e2e.notes.append("the client's parse grows with the response (ours is AWS's full shape); even a 0 ms "
                     f"server would make the ratio only about {moto_e2e:.1f} / {ours_client:.1f} ms "
                     f"(our p50 minus our raw p50) = {moto_e2e / max(ours_client, 1e-6):.2f}x")
    e2e.notes.append(e2e_cpu)
    return [raw, e2e]
