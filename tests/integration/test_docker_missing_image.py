"""The docker runtime with no registry: a cluster whose image cannot be pulled says why once (with
what to do), the pull is retried less and less often, and the cluster becomes available by itself,
without a restart, once the image is on the Docker engine (here: tagged from the local image)."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.conftest import running_server
from tests.eventually import eventually
from tests.integration.conftest import IMAGES

pytestmark = pytest.mark.docker


def test_a_missing_image_is_told_once_and_the_cluster_starts_when_it_appears(
        docker_client: Any, tmp_path: Path) -> None:
    local = docker_client.images.get(next(t for image in docker_client.images.list(
        IMAGES["redis"].split(":")[0]) for t in image.tags))
    version = local.tags[0].rsplit(":", 1)[1]
    # A registry on this machine's loopback that is not there: the pull fails at once, and no
    # traffic leaves the machine.
    missing = f"127.0.0.1:1/ecl-missing-{uuid.uuid4().hex[:8]}/redis"
    data_dir = tmp_path / "service"
    data_dir.mkdir()
    log_path = data_dir / "server.log"
    with running_server("docker", data_dir, ELASTICACHE_LOCAL_NODE_NETWORK="127.0.118.0/24",
                        ELASTICACHE_LOCAL_ENDPOINT_NETWORK="127.0.119.0/24",
                        ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS=missing + ":{version}",
                        ELASTICACHE_LOCAL_DOCKER_PULL="true",
                        ELASTICACHE_LOCAL_DOCKER_VERSIONS=f'{{"redis": ["{version}"]}}',
                        ELASTICACHE_LOCAL_RESYNC_INTERVAL="0.2",  # retried every 0.2 s but for the backoff
                        ELASTICACHE_LOCAL_LOG_LEVEL="debug") as server:
        ec = server.client()
        try:
            ec.create_cache_cluster(CacheClusterId="pulled", Engine="redis", CacheNodeType="cache.t3.micro",
                                    NumCacheNodes=1)

            def status() -> str:
                return str(ec.describe_cache_clusters(CacheClusterId="pulled")["CacheClusters"][0]
                           ["CacheClusterStatus"])

            eventually(lambda: status() == "incompatible-network", 30.0, 0.1, "the failure shown")
            # The second pull comes 2 s after the first, not at the next resync 0.2 s later.
            eventually(lambda: "failed again (attempt 2)" in log_path.read_text(), 30.0, 0.1, "a second pull")
            log = log_path.read_text()
            assert len(re.findall(r" INFO \S+: pulling image ", log)) == 1, log[-3000:]
            warned = re.findall(r" WARNING engine\S+: cannot pull .*", log)
            assert len(warned) == 1 and f"`docker pull {missing}:{version}`" in warned[0], log[-3000:]
            assert "deploy/build-images.sh" in warned[0]
            assert len(re.findall(r"failed again \(attempt", log)) == 1  # 0.2 s resyncs did not pull

            local.tag(missing, version)  # the image appears: no restart, no API call
            eventually(lambda: status() == "available", 60.0, 0.1, "the cluster available")
            node = ec.describe_cache_clusters(CacheClusterId="pulled", ShowCacheNodeInfo=True)[
                "CacheClusters"][0]["CacheNodes"][0]["Endpoint"]
            client = redis.Redis(host=node["Address"], port=node["Port"], socket_timeout=2)
            try:
                assert client.ping()
            finally:
                client.close()
        finally:
            with contextlib.suppress(Exception):  # never tagged, when the test failed before
                docker_client.images.remove(f"{missing}:{version}")  # the tag only: the image stays
