"""The live feed and the nodes route of a real server with real nodes: a cluster created with
boto3 streams its statuses, events and node health; an open stream does not hold up a stop."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.api.conftest import LiveServer, running_server
from tests.eventually import eventually
from tests.sse import SseReader


def _statuses(reader: SseReader, cluster_id: str) -> list[str | None]:
    return [m["status"] for m in reader.of("resource") if m["kind"] == "cache-cluster" and m["id"] == cluster_id]


def _get(server: LiveServer, path: str) -> Any:
    with urllib.request.urlopen(server.url + path, timeout=10) as reply:
        return json.loads(reply.read())


def test_a_cluster_created_with_boto3_is_followed_on_the_stream(server: LiveServer, ec: Any) -> None:
    with SseReader(f"{server.url}/api/v1/stream?region=us-east-1") as reader:
        reader.wait_connected()
        ec.create_cache_cluster(CacheClusterId="live", Engine="redis", CacheNodeType="cache.t3.micro",
                                NumCacheNodes=1)
        eventually(lambda: _statuses(reader, "live")[-1:] == ["available"], 60, 0.05, "available on the stream")
        assert _statuses(reader, "live")[0] == "creating"
        eventually(lambda: any(e["source_id"] == "live" and e["message"] == "Cache cluster created"
                               for e in reader.of("event")), 10, message="the creation event")
        node = eventually(lambda: next((n for n in reader.of("node") if n["cache_cluster_id"] == "live"), None),
                          30, 0.05, "the node's first answer")
        assert (node["node_id"], node["healthy"], node["role"]) == ("0001", True, "primary")

        (shown,) = _get(server, "/api/v1/nodes?cluster=live")["nodes"]
        assert (shown["role"], shown["healthy"], shown["status"]) == ("primary", True, "available")
        assert shown["used_memory_bytes"] > 0 and shown["connected_clients"] >= 0

        ec.delete_cache_cluster(CacheClusterId="live")
        eventually(lambda: _statuses(reader, "live")[-1:] == [None], 60, 0.05, "the delete on the stream")


def test_an_open_stream_does_not_hold_up_a_stop(tmp_path: Path) -> None:
    with running_server("process", tmp_path) as live:  # no nodes are started: no address is shared
        reader = SseReader(f"{live.url}/api/v1/stream")
        try:
            reader.wait_connected()
            started = time.monotonic()
            assert live.proc is not None
            proc = live.proc
            live.stop()  # Ctrl-C; killed after 15 s
            # 130: the exit status of a Ctrl-C'd serve (controlplane/serve.py), not a kill after 15 s.
            assert proc.returncode == 130 and time.monotonic() - started < 10
            eventually(lambda: reader.ended, 5, message="the stream ended")
        finally:
            reader.close()
