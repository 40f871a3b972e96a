"""Serverless caches with real nodes: boto3 creates one, redis-py connects over TLS (the service's
CA) to its endpoint without cluster awareness, keys spread over the shards behind keyroute, the
reader endpoint reads from the replica, and delete stops every node and the endpoint."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.api.conftest import LiveServer
from tests.api.writer import Writer
from tests.eventually import eventually


def _cache(ec: Any, name: str) -> dict[str, Any]:
    return dict(ec.describe_serverless_caches(ServerlessCacheName=name)["ServerlessCaches"][0])


def _ca(server: LiveServer, tmp_path: Path) -> str:
    with urllib.request.urlopen(server.url + "/api/v1/ca.pem", timeout=10) as resp:
        (tmp_path / "ca.pem").write_bytes(resp.read())
    return str(tmp_path / "ca.pem")


def _available(ec: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = eventually(lambda: (c := _cache(ec, name))["Status"] == "available" and c, 60, 0.1,
                                       "the serverless cache available")
    return found


@pytest.mark.parametrize("engine", ["valkey", "redis"])
def test_a_serverless_cache_serves_tls_clients_through_one_endpoint(server: LiveServer, ec: Any, tmp_path: Path,
                                                                    engine: str) -> None:
    created = ec.create_serverless_cache(ServerlessCacheName="sessions", Engine=engine)["ServerlessCache"]
    assert created["Status"] == "creating"
    cache = _available(ec, "sessions")
    endpoint, reader = cache["Endpoint"], cache["ReaderEndpoint"]
    assert (endpoint["Port"], reader["Port"]) == (6379, 6380)
    tls = {"ssl": True, "ssl_ca_certs": _ca(server, tmp_path), "socket_timeout": 5, "decode_responses": True}
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


def test_the_shard_primary_dying_under_a_writer_loses_no_acknowledged_write(server: LiveServer, ec: Any,
                                                                             tmp_path: Path) -> None:
    """kill -9 of the node serving the keys: the shard fails over behind the endpoint, keyroute
    follows it, and the client (same connection, retrying what failed) goes on."""
    ec.create_serverless_cache(ServerlessCacheName="orders", Engine="valkey")
    endpoint = _available(ec, "orders")["Endpoint"]
    client = redis.Redis(endpoint["Address"], endpoint["Port"], ssl=True, ssl_ca_certs=_ca(server, tmp_path),
                         socket_timeout=5)
    pid = int(client.info("server")["process_id"])  # one shard: any keyless command reaches its primary
    with Writer(client) as writer:
        writer.writing()
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        assert writer.resumed_after(killed_at, 200, timeout=20), "writes did not resume through the endpoint"
    assert int(client.info("server")["process_id"]) != pid
    acked = writer.acked
    pipe = client.pipeline(transaction=False)
    for i in acked:
        pipe.get(f"k{i}")
    assert [int(v) for v in pipe.execute()] == acked  # not one acknowledged write lost
    outage = max(writer.failures) - killed_at if writer.failures else 0.0
    assert outage < 5, f"writes failed for {outage:.2f} s"
    ec.delete_serverless_cache(ServerlessCacheName="orders")
    eventually(lambda: not ec.describe_serverless_caches()["ServerlessCaches"], 60, 0.1, "the cache deleted")
