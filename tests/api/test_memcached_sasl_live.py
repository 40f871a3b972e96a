"""Memcached SASL through the API on real memcached nodes: a cluster tagged
`elasticache-local:sasl=true` serves binary-protocol clients that log in with a user:password of
the service's credentials file; a wrong password and no login are refused; editing the file
changes the passwords live; a node added later has them too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from engine.adapters.memcached import find_saslpasswd2
from tests.api.conftest import RUNTIMES, LiveServer, require_docker, running_server
from tests.eventually import eventually
from tests.memcached_sasl import AUTH_ERROR, Binary
from tests.requires import needs

pytestmark = needs(find_saslpasswd2(), "saslpasswd2 is not installed (sasl2-bin; deploy/bootstrap.sh installs it)")

FAST = {"Delay": 0.1, "MaxAttempts": 300}
PW = "alice-Secret-ONE-1"
PW2 = "alice-Secret-TWO-2"
SASL = [{"Key": "elasticache-local:sasl", "Value": "true"}]


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


@pytest.fixture(scope="module", params=RUNTIMES)
def sasl_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    runtime: str = request.param
    if runtime == "docker":
        require_docker()
    data = tmp_path_factory.mktemp(f"sasl-{runtime}")
    users = data / "memcached-users"
    _write(users, f"alice:{PW}\n")
    with running_server(runtime, data, ELASTICACHE_LOCAL_MEMCACHED_SASL_FILE=str(users)) as live:
        yield live, users


def _nodes(ec: Any, cluster_id: str) -> list[tuple[str, int]]:
    ec.get_waiter("cache_cluster_available").wait(CacheClusterId=cluster_id, WaiterConfig=FAST)
    cluster = ec.describe_cache_clusters(CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]
    return [(n["Endpoint"]["Address"], n["Endpoint"]["Port"]) for n in cluster["CacheNodes"]]


def _login(address: tuple[str, int], password: str) -> int:
    conn = Binary(*address)
    try:
        return conn.login("alice", password)
    finally:
        conn.close()


def _served(address: tuple[str, int], password: str, key: bytes) -> None:
    conn = Binary(*address)
    try:
        assert conn.login("alice", password) == 0
        assert conn.set(key, b"v-" + key) == 0
        assert conn.get(key) == (0, b"v-" + key)
    finally:
        conn.close()


def test_the_right_password_works_a_wrong_one_and_none_are_refused(sasl_server: tuple[LiveServer, Path]) -> None:
    server, users = sasl_server
    ec = server.client()
    try:
        out = ec.create_cache_cluster(CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
                                      NumCacheNodes=2, Tags=SASL)["CacheCluster"]
        assert out["CacheClusterStatus"] == "creating"
        nodes = _nodes(ec, "mc")
        for i, address in enumerate(nodes):
            _served(address, PW, f"k{i}".encode())
            assert _login(address, "wrong-password") == AUTH_ERROR
            stranger = Binary(*address)
            assert stranger.get(b"k0")[0] == AUTH_ERROR  # nothing without a login
            stranger.close()
        # Through the configuration endpoint too: it forwards binary-protocol connections to a node.
        config = ec.describe_cache_clusters(CacheClusterId="mc")["CacheClusters"][0]["ConfigurationEndpoint"]
        _served((config["Address"], config["Port"]), PW, b"via-config")
        # A new password in the file: new logins take it within a resync, live.
        _write(users, f"alice:{PW2}\n")
        eventually(lambda: _login(nodes[0], PW2) == 0 and _login(nodes[1], PW2) == 0, 20.0, 0.2,
                   "the new password taking")
        assert _login(nodes[1], PW) == AUTH_ERROR
        # A node added later starts with the file's users of now.
        ec.modify_cache_cluster(CacheClusterId="mc", NumCacheNodes=3, ApplyImmediately=True)
        eventually(lambda: len(ec.describe_cache_clusters(CacheClusterId="mc", ShowCacheNodeInfo=True)
                               ["CacheClusters"][0]["CacheNodes"]) == 3, 20.0, 0.1, "the third node")
        added = _nodes(ec, "mc")[2]
        _served(added, PW2, b"k2")
        assert _login(added, PW) == AUTH_ERROR
        shown = repr(ec.describe_cache_clusters(ShowCacheNodeInfo=True)) + repr(ec.describe_events(Duration=60))
        assert PW not in shown and PW2 not in shown
        with pytest.raises(ClientError) as err:
            ec.create_cache_cluster(CacheClusterId="r", Engine="redis", CacheNodeType="cache.t3.micro", Tags=SASL)
        assert err.value.response["Error"]["Code"] == "InvalidParameterCombination"
    finally:
        server.reset()
