"""The service on the docker runtime, end to end: labelled containers, deletion, a `docker kill`
from outside, re-adoption after a restart, orphans removed at start-up, and an API that stays
responsive while 20 clusters start. (Every api test also runs on the docker runtime: tests/api/conftest.py.)"""

from __future__ import annotations

import http.client
import threading
import time
from typing import Any
from urllib.parse import urlparse

import pytest
import redis

from engine.runtime.docker import LABEL, DockerRuntime, memory_limit_mb, owner_for
from tests.api.conftest import LiveServer
from tests.eventually import eventually
from tests.integration.conftest import IMAGES, owned_containers

pytestmark = pytest.mark.docker

FAST = {"Delay": 0.1, "MaxAttempts": 300}


def owner(server: LiveServer) -> str:
    return owner_for(str(server.data_dir.resolve()))


def endpoint(ec: Any, cluster_id: str) -> tuple[str, int]:
    cluster = ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]
    ep = cluster["CacheNodes"][0]["Endpoint"]
    return ep["Address"], ep["Port"]


def events(ec: Any, cluster_id: str) -> list[str]:
    found = ec.describe_events(SourceType="cache-cluster", SourceIdentifier=cluster_id, Duration=60)["Events"]
    return [e["Message"] for e in found]


def test_labelled_containers_and_deletion(docker_server: LiveServer, docker_client: Any) -> None:
    ec = docker_server.client()
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.small",
                            NumCacheNodes=2)
    for cluster in ("web", "mc"):
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster, WaiterConfig=FAST)
    containers = owned_containers(docker_client, owner(docker_server))
    assert len(containers) == 3 and all(c.status == "running" for c in containers)
    by_cluster = {(c.labels[f"{LABEL}.cluster"], c.labels[f"{LABEL}.node"]): c for c in containers}
    assert sorted(by_cluster) == [("mc", "0001"), ("mc", "0002"), ("web", "0001")]
    web = by_cluster[("web", "0001")]
    assert web.labels[f"{LABEL}.account"] == "123456789012" and web.labels[f"{LABEL}.engine"] == "redis"
    assert web.labels[f"{LABEL}.data-dir"] == str(docker_server.data_dir.resolve())
    # cache.t3.micro: 0.5 GiB, as maxmemory and (with headroom) as the container's limit.
    assert web.attrs["HostConfig"]["Memory"] == memory_limit_mb(512) * 1024 * 1024
    host, port = endpoint(ec, "web")
    r = redis.Redis(host=host, port=port, socket_timeout=2)
    assert int(r.config_get("maxmemory")["maxmemory"]) == 512 * 1024 * 1024
    assert r.set("k", "v")

    ec.delete_cache_cluster(CacheClusterId="web")
    ec.get_waiter("cache_cluster_deleted").wait(CacheClusterId="web", WaiterConfig=FAST)
    left = owned_containers(docker_client, owner(docker_server))
    assert sorted(c.labels[f"{LABEL}.cluster"] for c in left) == ["mc", "mc"]
    volumes = docker_client.volumes.list(filters={"label": f"{LABEL}.owner={owner(docker_server)}"})
    assert sorted(v.attrs["Labels"][f"{LABEL}.cluster"] for v in volumes) == ["mc", "mc"]


def test_docker_kill_from_outside_is_recovered_within_5_s(docker_server: LiveServer, docker_client: Any) -> None:
    ec = docker_server.client()
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    host, port = endpoint(ec, "web")
    (container,) = owned_containers(docker_client, owner(docker_server))
    killed = time.monotonic()
    container.kill()  # `docker kill`

    def recovered_events() -> list[str]:
        messages = events(ec, "web")
        status = ec.describe_cache_clusters(CacheClusterId="web")["CacheClusters"][0]["CacheClusterStatus"]
        assert "Finished recovery for cache nodes 0001" in messages and status == "available", (status, messages)
        return messages

    messages = eventually(recovered_events, 5.0, 0.02, "recovered")
    recovered = time.monotonic() - killed
    assert messages[-2:] == ["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]
    assert redis.Redis(host=host, port=port, socket_timeout=2).ping()
    (again,) = owned_containers(docker_client, owner(docker_server))
    assert again.id == container.id  # the same container (and data volume), started again
    print(f"docker kill -> available in {recovered * 1000:.0f} ms")


def test_service_restart_readopts_containers(docker_server: LiveServer, docker_client: Any) -> None:
    ec = docker_server.client()
    for cluster in ("a", "b"):
        ec.create_cache_cluster(CacheClusterId=cluster, Engine="redis", CacheNodeType="cache.t3.micro")
    for cluster in ("a", "b"):
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster, WaiterConfig=FAST)
    before = {c.labels[f"{LABEL}.cluster"]: (c.id, c.attrs["State"]["Pid"])
              for c in owned_containers(docker_client, owner(docker_server))}
    host, port = endpoint(ec, "a")
    redis.Redis(host=host, port=port, socket_timeout=2).set("k", "v")

    docker_server.stop()
    # While the service is down, b's node dies: the next service restarts it.
    docker_client.containers.get(before["b"][0]).kill()
    docker_server.start()

    for cluster in ("a", "b"):
        ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster, WaiterConfig=FAST)
    def b_running() -> dict[str, tuple[str, int, str]]:
        after = {c.labels[f"{LABEL}.cluster"]: (c.id, c.attrs["State"]["Pid"], c.status)
                 for c in owned_containers(docker_client, owner(docker_server))}
        assert after["b"][2] == "running", after
        return after

    after = eventually(b_running, 10.0, 0.05, "b's container running again")
    assert len(owned_containers(docker_client, owner(docker_server))) == 2  # not duplicated
    assert after["a"][:2] == before["a"]  # re-adopted as it was: same container, same process
    assert after["b"][0] == before["b"][0] and after["b"][1] != before["b"][1]  # same container, restarted
    assert redis.Redis(host=host, port=port, socket_timeout=2).get("k") == b"v"


def test_api_answers_while_twenty_clusters_start(docker_server: LiveServer, docker_client: Any) -> None:
    ec = docker_server.client()
    url = urlparse(docker_server.url)
    body = "Action=DescribeCacheClusters&Version=2015-02-02"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    latencies: list[float] = []
    done = threading.Event()

    def describe_loop() -> None:
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
        try:
            for _ in range(2000):  # bounded: ~20 s at most
                if done.is_set():
                    return
                started = time.perf_counter()
                conn.request("POST", "/", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                latencies.append(time.perf_counter() - started)
                assert resp.status == 200
                time.sleep(0.01)
        finally:
            conn.close()

    ids = [f"c{i:02d}" for i in range(20)]
    poller = threading.Thread(target=describe_loop)
    poller.start()
    try:
        started = time.monotonic()
        for cluster in ids:
            ec.create_cache_cluster(CacheClusterId=cluster, Engine="redis", CacheNodeType="cache.t3.micro")
        def all_available() -> bool:
            clusters = ec.describe_cache_clusters()["CacheClusters"]
            assert len(clusters) == 20, len(clusters)
            assert all(c["CacheClusterStatus"] == "available" for c in clusters), [
                c["CacheClusterStatus"] for c in clusters]
            return True

        eventually(all_available, 60.0, 0.05, "20 clusters available")
        all_up = time.monotonic() - started
    finally:
        done.set()
        poller.join()
    assert len(owned_containers(docker_client, owner(docker_server))) == 20
    latencies.sort()
    worst, median = latencies[-1], latencies[len(latencies) // 2]
    print(f"20 clusters available in {all_up:.2f} s; describe during start: {len(latencies)} calls, "
          f"median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
    assert len(latencies) >= 10
    # Behaviour, not a speed target (bench/ measures that): a container start done on the event
    # loop, or under a lock Describe waits on, stalls the API for the start's length, 0.5-1 s here.
    # The old 100 ms bound failed on scheduling noise alone (110 ms in a CI run on 2 busy cores).
    assert worst < 0.400, f"DescribeCacheClusters took {worst * 1000:.0f} ms while clusters started"


def test_orphans_are_removed_at_start_up(docker_server: LiveServer, docker_client: Any) -> None:
    """A labelled container whose cluster no longer exists (say the state file was replaced) is
    removed when the service starts; the service's own nodes are kept."""
    ec = docker_server.client()
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro")
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId="web", WaiterConfig=FAST)
    docker_server.stop()
    runtime = DockerRuntime(owner=owner(docker_server), images=IMAGES, pull=False)
    try:
        from engine.runtime.base import NodeConfig

        version = runtime.available_versions()["redis"][0]
        runtime.start(NodeConfig("123456789012-us-east-1-gone-0001", "redis", version, "127.0.124.200", 6379, 64,
                                 labels={"cluster": "gone", "node": "0001"}))
    finally:
        runtime.close()
    docker_server.start()

    def only_web() -> bool:
        clusters = sorted(c.labels[f"{LABEL}.cluster"] for c in owned_containers(docker_client, owner(docker_server)))
        assert clusters == ["web"], clusters
        return True

    eventually(only_web, 10.0, 0.1, "the orphan removed")
