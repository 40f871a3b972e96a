"""Serverless caches with real nodes: boto3 creates one, redis-py connects over TLS (the service's
CA) to its endpoint without cluster awareness, keys spread over the shards behind keyroute, the
reader endpoint reads from the replica, and delete stops every node and the endpoint."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.conftest import LiveServer
from tests.eventually import eventually


def _cache(ec: Any, name: str) -> dict[str, Any]:
    return dict(ec.describe_serverless_caches(ServerlessCacheName=name)["ServerlessCaches"][0])


@pytest.mark.parametrize("engine", ["valkey", "redis"])
def test_a_serverless_cache_serves_tls_clients_through_one_endpoint(server: LiveServer, ec: Any, tmp_path: Path,
                                                                    engine: str) -> None:
    created = ec.create_serverless_cache(ServerlessCacheName="sessions", Engine=engine)["ServerlessCache"]
    assert created["Status"] == "creating"
    cache = eventually(lambda: (c := _cache(ec, "sessions"))["Status"] == "available" and c, 60, 0.1,
                       "the serverless cache available")
    endpoint, reader = cache["Endpoint"], cache["ReaderEndpoint"]
    assert (endpoint["Port"], reader["Port"]) == (6379, 6380)
    with urllib.request.urlopen(server.url + "/api/v1/ca.pem", timeout=10) as resp:
        (tmp_path / "ca.pem").write_bytes(resp.read())
    tls = {"ssl": True, "ssl_ca_certs": str(tmp_path / "ca.pem"), "socket_timeout": 5, "decode_responses": True}
    client = redis.Redis(endpoint["Address"], endpoint["Port"], **tls)
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"session:{i}", f"user-{i}")
    assert all(pipe.execute())
    assert client.get("session:1999") == "user-1999" and client.dbsize() == 2000
    reader_client = redis.Redis(reader["Address"], reader["Port"], **tls)
    eventually(lambda: reader_client.get("session:7") == "user-7", 10, 0.05, "the reader endpoint reading")
    with pytest.raises(redis.ConnectionError):  # TLS only, as AWS's serverless caches
        redis.Redis(endpoint["Address"], endpoint["Port"], socket_timeout=2).ping()
    client.close()
    reader_client.close()
    ec.delete_serverless_cache(ServerlessCacheName="sessions")
    eventually(lambda: not ec.describe_serverless_caches()["ServerlessCaches"], 60, 0.1, "the cache deleted")

    def closed() -> bool:
        try:
            socket.create_connection((endpoint["Address"], endpoint["Port"]), timeout=0.5).close()
        except OSError:
            return True
        return False

    eventually(closed, 10, 0.05, "the endpoint closed")
    assert ec.describe_replication_groups()["ReplicationGroups"] == []
