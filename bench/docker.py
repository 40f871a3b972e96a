"""The docker runtime's two costs, each beside its anchor measured in the same run.

(i) Data path: redis-benchmark (SET and GET, plain and pipelined) against a redis node in a
docker container with host networking, beside a bare redis-server on the same machine with the
same settings (no snapshots). Target: >= 0.95x. For context, the same node with its port
published (`-p`, docker-proxy: the "ports" network mode for Docker Desktop).
(ii) CreateCacheCluster response -> `available`, docker runtime beside the process runtime, each
in a service of its own (create, poll, delete, poll: lifecycle.py's pairs). Target: docker
median < 400 ms.

Run alone: `.venv/bin/python -m bench.docker [--quick]`; needs a Docker engine (and, without a
registry, the local images of deploy/build-images.sh, which are preferred when present).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from bench.lab import Lab, Ours, _stop_process, log
from bench.lifecycle import our_pairs
from bench.report import Row, Table, median, ours_below, percentile, ratio_at_least
from engine.runtime.base import NodeConfig

BENCHMARK = "redis-benchmark"
REDIS = "redis-server"
NODE_NETWORK = "127.0.133.0/24"
ENDPOINT_NETWORK = "127.0.134.0/24"
BENCH_HOSTS = ("127.0.135.1", "127.0.135.2", "127.0.135.3")  # docker host-net, bare, docker -p
LOCAL = {"redis": "elasticache-local/redis:{version}", "valkey": "elasticache-local/valkey:{version}",
         "memcached": "elasticache-local/memcached:{version}"}
OFFICIAL = {"redis": "redis:{version}", "valkey": "valkey/valkey:{version}", "memcached": "memcached:{version}"}


def docker_problem() -> str | None:
    try:
        import docker

        client = docker.DockerClient.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine is reachable ({type(exc).__name__})"
    return None


def image_settings() -> tuple[dict[str, str], bool]:
    """Local images when deploy/build-images.sh made them (no registry needed), else the
    official ones, pulled on first use."""
    import docker

    client = docker.DockerClient.from_env(timeout=30)
    try:
        local = any(t.startswith("elasticache-local/redis:") for i in client.images.list() for t in i.tags)
    finally:
        client.close()
    return (dict(LOCAL), False) if local else (dict(OFFICIAL), True)


# --- (i) data path ---

def _benchmark(host: str, requests: int, pipeline: int, port: int = 6379, extra: tuple[str, ...] = ()
               ) -> dict[str, float]:
    """requests/s per test (SET, GET) from redis-benchmark's CSV output (`extra`: --tls ...)."""
    argv = [BENCHMARK, "-h", host, "-p", str(port), "-t", "set,get", "-n", str(requests), "-c", "50",
            "-P", str(pipeline), "--csv", "-q", *extra]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr[-500:]}")
    rates: dict[str, float] = {}
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] in ("SET", "GET"):
            rates[cells[0]] = float(cells[1])
    if set(rates) != {"SET", "GET"}:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[:300]!r}")
    return rates


@contextlib.contextmanager
def _bare_redis(config: NodeConfig) -> Iterator[None]:
    """A bare redis-server with exactly the node's directives (maxmemory and its policy too)."""
    from engine.runtime.docker import node_command

    with tempfile.TemporaryDirectory(prefix="bench-docker-bare-") as cwd:
        argv = node_command(config)
        argv[0] = shutil.which(REDIS) or REDIS
        argv[argv.index("--dir") + 1] = cwd
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _await_ping(config.host)
            yield
        finally:
            _stop_process(proc, signal.SIGTERM)


def _await_ping(host: str) -> None:
    from engine.access import Reach
    from engine.adapters.redis import probe

    deadline = time.monotonic() + 30
    while not probe(Reach(host, 6379), 0.5).ok:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no redis answers on {host}:6379")
        time.sleep(0.01)


def data_path(quick: bool) -> Table:
    from engine.runtime.docker import DockerRuntime

    images, pull = image_settings()
    rounds, requests = (2, 20_000) if quick else (5, 100_000)
    owner = f"bench{random.randrange(16**6):06x}"
    host_net = DockerRuntime(owner=owner, images=images, pull=pull)
    published = DockerRuntime(owner=owner, images=images, pull=pull, network="ports")
    results: dict[str, dict[str, list[float]]] = {"docker": {}, "bare": {}, "ports": {}}
    try:
        version = host_net.available_versions()["redis"][0]

        def config(name: str, host: str) -> NodeConfig:
            return NodeConfig(name, "redis", version, host, 6379, 1024, settings={"save": ""})

        host_net.start(config("bench-host", BENCH_HOSTS[0]))
        published.start(config("bench-ports", BENCH_HOSTS[2]))
        _await_ping(BENCH_HOSTS[0])
        _await_ping(BENCH_HOSTS[2])
        with _bare_redis(config("bench-bare", BENCH_HOSTS[1])):
            for r in range(rounds):  # interleaved, so drift on a shared machine hits both alike
                for pipeline in (1, 16):
                    for kind, host in (("docker", BENCH_HOSTS[0]), ("bare", BENCH_HOSTS[1]),
                                       ("ports", BENCH_HOSTS[2])):
                        log(f"docker data path: round {r + 1}/{rounds}, {kind}, pipeline {pipeline}")
                        # Pipelined runs are ~10x faster: 10x the requests to measure as long.
                        count = requests * (10 if pipeline > 1 else 1)
                        for test, rate in _benchmark(host, count, pipeline).items():
                            results[kind].setdefault(f"{test} -P {pipeline}", []).append(rate)
    finally:
        for runtime, name in ((host_net, "bench-host"), (published, "bench-ports")):
            with contextlib.suppress(Exception):
                runtime.remove(name)
            runtime.close()
    table = Table(f"redis-benchmark requests/s through the node's endpoint ({requests} requests, x10 pipelined; "
                  f"50 clients; best of {rounds}, interleaved): docker node vs bare redis-server, same directives",
                  "bare redis-server")
    for test in results["bare"]:
        table.add(Row(f"{test}: docker, host networking", max(results["docker"][test]),
                      max(results["bare"][test]), "req/s", target=ratio_at_least(0.95)))
    for test in results["bare"]:
        table.add(Row(f"{test}: docker, published port (-p)", max(results["ports"][test]),
                      max(results["bare"][test]), "req/s"))
    table.notes.append("best of the rounds: on a shared 2-CPU machine other work only ever lowers a run, "
                       "and both sides take turns")
    table.notes.append(f"redis {version}, image {images['redis'].format(version=version)}; "
                       "the published-port rows are the Docker Desktop fallback (network mode 'ports')")
    return table


# --- (ii) create -> available ---

class DockerOurs(Ours):
    """elasticache-local on the docker runtime (its own data directory and networks)."""

    name = "elasticache-local (docker)"
    networks = (NODE_NETWORK, ENDPOINT_NETWORK)

    def settings(self) -> dict[str, str]:
        images, pull = image_settings()
        return {
            "ELASTICACHE_LOCAL_RUNTIME": "docker",
            "ELASTICACHE_LOCAL_DOCKER_PULL": "true" if pull else "false",
            "ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS": images["redis"],
            "ELASTICACHE_LOCAL_DOCKER_IMAGE_VALKEY": images["valkey"],
            "ELASTICACHE_LOCAL_DOCKER_IMAGE_MEMCACHED": images["memcached"],
        }

    def stop(self) -> None:
        data_dir = (self.dir / "data").resolve()
        try:
            if self.proc is not None and self.proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.reset()
                _stop_process(self.proc, signal.SIGINT)
        finally:
            self.proc = None
            from engine.runtime.docker import DockerRuntime, owner_for

            runtime = DockerRuntime(owner=owner_for(str(data_dir)), images=LOCAL, pull=False)
            try:
                for node in runtime.list_managed():
                    runtime.remove(node.name)
            finally:
                runtime.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def create_to_available(lab: Lab) -> Table:
    n = 5 if lab.quick else 20
    process = lab.ours
    lab.reset()
    log(f"docker: process runtime, {n} create/available/delete pairs")
    try:
        on_process = our_pairs(process, n)
    finally:
        lab.reset()
    server = DockerOurs()
    try:
        log("docker: starting elasticache-local on the docker runtime")
        server.start()
        log(f"docker: docker runtime, {n} create/available/delete pairs")
        on_docker = our_pairs(server, n)
    finally:
        server.stop()
    table = Table(f"CreateCacheCluster response -> available (n={n}): docker runtime vs process runtime",
                  "process runtime")
    table.add(Row("median", median(on_docker.to_available) * 1e3, median(on_process.to_available) * 1e3, "ms",
                  target=ours_below(400, "ms")))
    table.add(Row("p90", percentile(on_docker.to_available, 90) * 1e3,
                  percentile(on_process.to_available, 90) * 1e3, "ms"))
    table.add(Row("max", max(on_docker.to_available) * 1e3, max(on_process.to_available) * 1e3, "ms"))
    table.add(Row("delete response -> NotFound, median", median(on_docker.to_gone) * 1e3,
                  median(on_process.to_gone) * 1e3, "ms"))
    table.notes.append("docker: one container (host networking) and one named volume per node, "
                       "created, started and probed; process: one redis-server fork/exec")
    return table


def run(lab: Lab) -> list[Table]:
    """For the bench runner (`BENCHMARKS["docker"] = docker.run`)."""
    problem = docker_problem()
    if problem is not None:
        raise RuntimeError(f"{problem}: start Docker (deploy/docker-setup.sh) to run this benchmark")
    if shutil.which(BENCHMARK) is None or shutil.which(REDIS) is None:
        raise RuntimeError(f"{BENCHMARK} and {REDIS} are needed (Debian/Ubuntu: apt-get install redis-tools "
                           "redis-server)")
    return [data_path(lab.quick), create_to_available(lab)]


def main(quick: bool) -> None:
    """Run both comparisons and print their tables (servers and containers are always removed)."""
    started = time.perf_counter()
    with Lab(quick=quick) as lab:
        for table in run(lab):
            print(table.render(), flush=True)
            print()
    print(f"(docker took {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.docker", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    try:
        main(args.quick)
    except KeyboardInterrupt:
        print("\ninterrupted; servers and containers removed", file=sys.stderr)
        sys.exit(130)

