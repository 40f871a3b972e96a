"""Online resharding with real nodes: 100,000 keys in a 3-shard Redis Cluster, resharded to 4
shards (the aws cli) then to 2 (boto3) while a RedisCluster client writes and reads through the
configuration endpoint: no acknowledged write lost, no key lost, and the client sees only what
it may retry (RedisCluster follows MOVED and ASK itself)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from tests.api.conftest import LiveServer
from tests.eventually import eventually

FAST = {"Delay": 0.1, "MaxAttempts": 600}
KEYS = 100_000
RETRIED = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
           redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError, redis.exceptions.AskError,
           redis.exceptions.MovedError)


class Client(threading.Thread):
    """Writes w0, w1, ... and reads back random keys of the loaded 100,000, in a loop: what was
    acknowledged, what was retried, and any other error (none may happen)."""

    def __init__(self, client: RedisCluster) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.acked: list[int] = []
        self.reads = 0
        self.retried: list[str] = []
        self.wrong: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        i, rng = 0, random.Random(7)
        while not self._halt.is_set():
            key = rng.randrange(KEYS)
            try:
                self.client.set(f"w{i}", i)
                self.acked.append(i)
                i += 1
                value = self.client.get(f"k{key}")
                if value != str(key).encode():
                    self.wrong.append(f"k{key} read {value!r}")
                self.reads += 1
            except RETRIED as exc:
                self.retried.append(type(exc).__name__)
                time.sleep(0.005)
            except AttributeError as exc:
                # redis-py's own bug (redis/redis-py#4015, fix proposed in #4214): an ASK redirect to
                # a master that serves no slot yet (a new shard) dereferences a node missing from
                # its cache, which it builds from CLUSTER SLOTS. Any resharding onto a new master
                # meets it (redis-cli's too); the command is retried as an application would.
                if "redis_connection" not in str(exc):
                    raise
                self.retried.append("redis-py#4015")
            except Exception as exc:  # what an application could not retry: the test fails
                self.wrong.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def _available(ec: Any, server: LiveServer) -> None:
    """The group is available again (else the failure says what it is and what the log says)."""
    try:
        ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
    except Exception as exc:
        group = _group(ec)
        log = (server.data_dir / "server.log").read_text(errors="replace").splitlines()
        said = [line for line in log if "reshard" in line.lower() or "not settled" in line][-10:]
        raise AssertionError(f"{exc}: {group['Status']} {group.get('PendingModifiedValues')} {said}") from exc


def _group(ec: Any) -> dict[str, Any]:
    return dict(ec.describe_replication_groups(ReplicationGroupId="cl")["ReplicationGroups"][0])


def _slot_counts(ec: Any) -> list[int]:
    out = []
    for g in _group(ec)["NodeGroups"]:
        ranges = [p.partition("-") for p in g["Slots"].split(",")]
        out.append(sum(int(b or a) - int(a) + 1 for a, _, b in ranges))
    return out


def _check_all(client: RedisCluster, acked: list[int]) -> None:
    """Every loaded key and every acknowledged write is there (pipelined reads)."""
    for start in range(0, KEYS, 10_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 10_000):
            pipe.get(f"k{i}")
        values = pipe.execute()
        lost = [start + n for n, v in enumerate(values) if v != str(start + n).encode()]
        assert lost == [], f"{len(lost)} loaded keys lost, e.g. k{lost[:5]}"
    pipe = client.pipeline(transaction=False)
    for i in acked:
        pipe.get(f"w{i}")
    missing = [i for i, v in zip(acked, pipe.execute(), strict=True) if v is None]
    assert missing == [], f"{len(missing)} acknowledged writes lost"


@pytest.mark.slow
def test_resharding_3_to_4_to_2_under_a_client(ec: Any, server: LiveServer) -> None:
    ec.create_replication_group(ReplicationGroupId="cl", ReplicationGroupDescription="d", Engine="redis",
                                CacheNodeType="cache.t3.micro", NumNodeGroups=3, ReplicasPerNodeGroup=1)
    ec.get_waiter("replication_group_available").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
    config = _group(ec)["ConfigurationEndpoint"]
    client = RedisCluster(host=config["Address"], port=config["Port"], socket_timeout=5, socket_connect_timeout=2)
    worker: Client | None = None
    try:
        for start in range(0, KEYS, 10_000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, start + 10_000):
                pipe.set(f"k{i}", i)
            pipe.execute()
        worker = Client(client)
        worker.start()
        eventually(lambda: len(worker.acked) >= 200, 10.0, 0.01, "the client under way")

        # 3 -> 4 with the aws cli, as a user would.
        answer = server.aws("modify-replication-group-shard-configuration", "--replication-group-id", "cl",
                            "--node-group-count", "4", "--apply-immediately")["ReplicationGroup"]
        assert answer["Status"] == "modifying" and len(answer["NodeGroups"]) == 4
        _available(ec, server)
        assert _slot_counts(ec) == [4096] * 4
        assert len(_group(ec)["MemberClusters"]) == 8
        done = len(worker.acked)
        eventually(lambda: len(worker.acked) >= done + 200, 10.0, 0.01, "writes after the resharding")

        # 4 -> 2, removing two shards, with boto3.
        ec.modify_replication_group_shard_configuration(ReplicationGroupId="cl", NodeGroupCount=2,
                                                        NodeGroupsToRemove=["0002", "0004"], ApplyImmediately=True)
        _available(ec, server)
        group = _group(ec)
        assert [g["NodeGroupId"] for g in group["NodeGroups"]] == ["0001", "0003"]
        assert _slot_counts(ec) == [8192, 8192]
        assert sorted(group["MemberClusters"]) == ["cl-0001-001", "cl-0001-002", "cl-0003-001", "cl-0003-002"]
        done = len(worker.acked)
        eventually(lambda: len(worker.acked) >= done + 200, 10.0, 0.01, "writes after the second resharding")
        worker.stop()
        assert worker.wrong == [], worker.wrong[:5]
        assert worker.reads > 0
        _check_all(client, worker.acked)
        with redis.Redis(host=config["Address"], port=config["Port"], socket_timeout=2) as plain:
            nodes = plain.execute_command("CLUSTER", "NODES").decode().splitlines()
        assert len(nodes) == 4  # the removed shards' nodes are forgotten
        events = [e["Message"] for e in ec.describe_events(SourceType="replication-group",
                                                           SourceIdentifier="cl")["Events"]]
        assert any(e.startswith("Started online resharding of replication group cl: 3 to 4") for e in events)
        assert any(e.startswith("Started online resharding of replication group cl: 4 to 2") for e in events)
    finally:
        if worker is not None:
            worker.stop()
        client.close()
    ec.delete_replication_group(ReplicationGroupId="cl")
    ec.get_waiter("replication_group_deleted").wait(ReplicationGroupId="cl", WaiterConfig=FAST)
