"""keyroute, the one-endpoint proxy in front of a Redis Cluster, against a real cluster of
redis-servers (3 primaries, 3 replicas, on 127.0.202.0/24): every key reaches the node of its
slot, pipelines keep their order across shards, slots that move are followed (MOVED and ASK),
the reader address reads replicas, TLS clients are served, and what cannot share a connection is
refused."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from controlplane.tls import LocalCa
from engine.cluster import even_ranges
from engine.proxy.keyroute import KeyRoute, KeyRouteConfig, build_keyroute, command_table
from engine.proxy.tcp import ProxyError
from tests.eventually import eventually
from tests.requires import missing

PORT = 7000
PRIMARIES = ("127.0.202.1", "127.0.202.2", "127.0.202.3")
REPLICAS = ("127.0.202.4", "127.0.202.5", "127.0.202.6")
ENDPOINT = ("127.0.202.10", 6379)
READER = ("127.0.202.10", 6380)
TLS_ENDPOINT = ("127.0.202.11", 6379)


def _client(host: str, port: int = PORT) -> redis.Redis:
    return redis.Redis(host, port, socket_timeout=5, decode_responses=True)


def _start(binary: str, ip: str, d: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [binary, "--bind", ip, "--port", str(PORT), "--dir", str(d), "--cluster-enabled", "yes",
         "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
         "--cluster-node-timeout", "5000", "--cluster-announce-ip", ip],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Cluster(dict[str, str]):
    """The node id of each address, and the processes (a test may stop and start one again)."""

    def __init__(self, binary: str, base: Path) -> None:
        super().__init__()
        self.binary, self.base = binary, base
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, ip: str) -> None:
        (self.base / ip).mkdir(exist_ok=True)
        self.processes[ip] = _start(self.binary, ip, self.base / ip)
        eventually(lambda: _client(ip).ping(), 10, 0.05, f"redis on {ip}")

    def kill(self, ip: str) -> None:
        self.processes[ip].kill()
        self.processes[ip].wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A real Redis Cluster: the node id of each address."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed")
    nodes = Cluster(binary, tmp_path_factory.mktemp("cluster"))
    try:
        for ip in (*PRIMARIES, *REPLICAS):
            nodes.start(ip)
        nodes.update({ip: _client(ip).execute_command("CLUSTER", "MYID") for ip in (*PRIMARIES, *REPLICAS)})
        for ip in (*PRIMARIES[1:], *REPLICAS):
            _client(PRIMARIES[0]).execute_command("CLUSTER", "MEET", ip, PORT)
        for ip, (first, last) in zip(PRIMARIES, even_ranges(3), strict=True):
            _client(ip).execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)

        def everyone_knows() -> bool:
            return all(len(_client(ip).execute_command("CLUSTER", "NODES").splitlines()) == 6
                       and "handshake" not in _client(ip).execute_command("CLUSTER", "NODES")
                       for ip in (*PRIMARIES, *REPLICAS))

        eventually(everyone_knows, 15, 0.05, "every node knowing the others")
        for primary, replica in zip(PRIMARIES, REPLICAS, strict=True):
            _client(replica).execute_command("CLUSTER", "REPLICATE", nodes[primary])
        eventually(_settled, 20, 0.05, "the cluster ok and its replicas in sync")
        yield nodes
    finally:
        for process in nodes.processes.values():
            process.kill()
            process.wait(5)


def _settled() -> bool:
    # every node's map shows each shard with its replica (what the proxy reads)
    return all("cluster_state:ok" in _client(ip).execute_command("CLUSTER", "INFO")
               and _client(ip).info("replication").get("master_link_status", "up") == "up"
               and all(len(r) == 4 for r in _client(ip).execute_command("CLUSTER", "SLOTS"))
               for ip in (*PRIMARIES, *REPLICAS))


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing("no C compiler (apt-get install gcc libssl-dev)")
    return build_keyroute(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="module")
def route(cluster: Cluster, binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyRoute]:
    proxy = KeyRoute(binary, tmp_path_factory.mktemp("route"), KeyRouteConfig(
        listen=[ENDPOINT], readers=[READER], seeds=[(PRIMARIES[0], PORT), (PRIMARIES[1], PORT)]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def endpoint(route: KeyRoute) -> Iterator[redis.Redis]:
    client = redis.Redis(*ENDPOINT, socket_timeout=5, decode_responses=True)
    client.flushall()  # every primary runs it
    assert all(_client(ip).dbsize() == 0 for ip in PRIMARIES)
    try:
        yield client
    finally:
        client.close()


def _direct() -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode(PRIMARIES[0], PORT)], decode_responses=True)


def test_every_key_reaches_the_node_of_its_slot_and_pipelines_keep_their_order(endpoint: redis.Redis) -> None:
    pipe = endpoint.pipeline(transaction=False)
    for i in range(3000):
        pipe.set(f"key:{i}", f"value:{i}")
    assert all(pipe.execute())
    direct = _direct()
    try:
        # Each key is on the node that owns its slot (the cluster client reads it there).
        assert [direct.get(f"key:{i}") for i in range(0, 3000, 7)] == [f"value:{i}" for i in range(0, 3000, 7)]
        assert sum(_client(ip).dbsize() for ip in PRIMARIES) == 3000
        assert all(_client(ip).dbsize() > 500 for ip in PRIMARIES)  # spread over every shard
    finally:
        direct.close()
    pipe = endpoint.pipeline(transaction=False)
    for i in reversed(range(3000)):
        pipe.get(f"key:{i}")
    assert pipe.execute() == [f"value:{i}" for i in reversed(range(3000))]


def test_commands_about_the_whole_cache_ask_every_shard(endpoint: redis.Redis) -> None:
    names = {f"all:{i}" for i in range(700)}
    pipe = endpoint.pipeline(transaction=False)
    for name in names:
        pipe.set(name, "1")
    pipe.execute()
    assert endpoint.dbsize() == len(names)  # the sum of every shard's
    assert set(endpoint.keys("all:*")) == names
    seen, cursor, calls = [], 0, 0
    while True:
        cursor, page = endpoint.scan(cursor, match="all:*", count=100)
        seen += page
        calls += 1
        if cursor == 0 or calls > 500:
            break
    assert set(seen) == names and calls < 500
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        endpoint.execute_command("SCAN", "1023")
    # A script loaded once runs by its digest on every shard.
    sha = endpoint.script_load("return redis.call('GET', KEYS[1])")
    assert [endpoint.evalsha(sha, 1, f"all:{i}") for i in range(30)] == ["1"] * 30
    assert endpoint.flushall() and endpoint.dbsize() == 0


def test_multi_key_commands_need_one_slot(endpoint: redis.Redis) -> None:
    assert endpoint.mset({"{user:1}:name": "ada", "{user:1}:lang": "en"})
    assert endpoint.mget("{user:1}:name", "{user:1}:lang") == ["ada", "en"]
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):
        endpoint.mset({"a": "1", "b": "2"})
    assert endpoint.eval("return redis.call('GET', KEYS[1])", 1, "{user:1}:name") == "ada"
    assert endpoint.eval("return 42", 0) == 42  # no key: any node


def test_a_moved_slot_is_followed(endpoint: redis.Redis, cluster: Cluster) -> None:
    key = "moving-key"
    slot = _client(PRIMARIES[0]).execute_command("CLUSTER", "KEYSLOT", key)
    source, target = _owner(slot), next(ip for ip in PRIMARIES if ip != _owner(slot))
    endpoint.set(key, "before")
    try:
        _move_slot(slot, source, target, cluster)
        # The proxy still maps the slot to the old owner: it gets MOVED and follows it.
        assert endpoint.get(key) == "before"
        assert endpoint.set(key, "after")
        assert _client(target).get(key) == "after"
    finally:
        _move_slot(slot, _owner(slot), source, cluster)


def test_a_slot_being_migrated_is_followed_with_asking(endpoint: redis.Redis, cluster: Cluster) -> None:
    moved, stays = "{mig}moved", "{mig}stays"
    slot = _client(PRIMARIES[0]).execute_command("CLUSTER", "KEYSLOT", moved)
    source = _owner(slot)
    target = next(ip for ip in PRIMARIES if ip != source)
    endpoint.set(moved, "on-target")
    endpoint.set(stays, "on-source")
    src, dst = _client(source), _client(target)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster[source])
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster[target])
    try:
        src.execute_command("MIGRATE", target, PORT, moved, 0, 5000)
        # The source answers ASK for the key it no longer has: ASKING then GET on the target.
        assert endpoint.get(moved) == "on-target"
        assert endpoint.get(stays) == "on-source"
    finally:
        src.execute_command("MIGRATE", target, PORT, stays, 0, 5000)
        for ip in PRIMARIES:
            _client(ip).execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster[target])
        _move_slot(slot, target, source, cluster)
    assert endpoint.mget(moved, stays) == ["on-target", "on-source"]


def test_the_reader_address_reads_from_replicas(endpoint: redis.Redis) -> None:
    keys = [f"read:{i}" for i in range(60)]
    for key in keys:
        endpoint.set(key, key)
    for primary in PRIMARIES:
        _client(primary).execute_command("WAIT", 1, 2000)
    before = sum(_get_calls(ip) for ip in REPLICAS)
    reader = redis.Redis(*READER, socket_timeout=5, decode_responses=True)
    try:
        assert [reader.get(k) for k in keys] == keys
        with pytest.raises(redis.ResponseError, match="hash to the same slot"):
            reader.mget("a", "b")
    finally:
        reader.close()
    assert sum(_get_calls(ip) for ip in REPLICAS) - before >= len(keys)


def test_what_cannot_share_a_connection_is_refused(endpoint: redis.Redis) -> None:
    for command in (("MULTI",), ("BLPOP", "q", "1"), ("SUBSCRIBE", "news"), ("WATCH", "k")):
        with pytest.raises(redis.ResponseError, match="not available through this endpoint"):
            endpoint.execute_command(*command)
    with pytest.raises(redis.ResponseError, match="XREAD BLOCK"):
        endpoint.execute_command("XREAD", "BLOCK", "10", "STREAMS", "s", "0")
    endpoint.xadd("s", {"f": "v"})
    assert endpoint.xread({"s": "0"})[0][0] == "s"
    assert endpoint.ping()
    assert endpoint.execute_command("SELECT", "0")
    with pytest.raises(redis.ResponseError, match="unknown command"):
        endpoint.execute_command("NOSUCHCOMMAND", "x")
    assert endpoint.get("still-served") is None  # the connection is still usable


def test_cluster_clients_see_one_node_with_every_slot(route: KeyRoute) -> None:
    with socket.create_connection(ENDPOINT, timeout=5):
        pass
    client = _client(*ENDPOINT)
    try:
        slots = client.execute_command("CLUSTER", "SLOTS")
        assert slots[0][:2] == [0, 16383]
        assert slots[0][2][:2] == [ENDPOINT[0], ENDPOINT[1]]  # the address the client used
    finally:
        client.close()
    cluster_client = RedisCluster(*ENDPOINT, decode_responses=True)
    try:
        assert cluster_client.set("cc", "1") and cluster_client.get("cc") == "1"
    finally:
        cluster_client.close()


def test_tls_clients(cluster: Cluster, binary: Path, tmp_path: Path) -> None:
    ca = LocalCa(tmp_path)
    cert, key = ca.issue([TLS_ENDPOINT[0]])
    proxy = KeyRoute(binary, tmp_path / "route", KeyRouteConfig(
        listen=[TLS_ENDPOINT], seeds=[(PRIMARIES[0], PORT)], cert_file=cert, key_file=key))
    proxy.start()
    try:
        client = redis.Redis(*TLS_ENDPOINT, ssl=True, ssl_ca_certs=str(ca.ca_path), socket_timeout=5,
                             decode_responses=True)
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"tls:{i}", "x" * (i * 40))  # up to 20 KB: replies across TLS records
        assert all(pipe.execute())
        assert client.get("tls:499") == "x" * (499 * 40)
        client.close()
        plain = redis.Redis(*TLS_ENDPOINT, socket_timeout=2)
        with pytest.raises(redis.ConnectionError):
            plain.ping()
    finally:
        proxy.stop()


def test_a_node_that_goes_away_gives_retryable_errors_then_is_served_again(endpoint: redis.Redis,
                                                                          cluster: Cluster) -> None:
    victim = PRIMARIES[2]
    key = next(f"k{i}" for i in range(1000) if _owner(_client(victim).execute_command("CLUSTER", "KEYSLOT",
                                                                                      f"k{i}")) == victim)
    other = next(f"k{i}" for i in range(1000) if _owner(_client(victim).execute_command("CLUSTER", "KEYSLOT",
                                                                                        f"k{i}")) != victim)
    endpoint.set(other, "fine")
    cluster.kill(victim)
    try:
        with pytest.raises((redis.ResponseError, redis.ConnectionError), match=r"retry|TRYAGAIN|lost|reached"):
            endpoint.get(key)
        assert endpoint.get(other) == "fine"  # the other shards never notice
    finally:
        cluster.start(victim)  # same data directory: same node id and slots (nodes.conf)
    def served() -> bool:
        try:
            return bool(endpoint.set(key, "back"))
        except redis.RedisError as exc:  # CLUSTERDOWN while the restarted node rejoins
            raise AssertionError(str(exc)) from exc

    eventually(served, 15, 0.1, "the node served through the proxy again")
    eventually(_settled, 20, 0.05, "the cluster ok again")


def test_clients_logged_in_are_judged_by_the_nodes_acls(endpoint: redis.Redis, cluster: Cluster) -> None:
    for ip in (*PRIMARIES, *REPLICAS):
        _client(ip).execute_command("ACL", "SETUSER", "app", "reset", "on", ">app-password-1234", "~app:*",
                                    "+get", "+set", "+ping", "+hello", "+auth", "+cluster")
    try:
        for protocol in (2, 3):  # AUTH, and HELLO 3 AUTH (redis-py's way with RESP3)
            app = redis.Redis(*ENDPOINT, username="app", password="app-password-1234", protocol=protocol,
                              socket_timeout=5, decode_responses=True)
            keys = [f"app:{i}" for i in range(30)]  # every shard
            for key in keys:
                assert app.set(key, "1")
            assert [app.get(k) for k in keys] == ["1"] * 30
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.set("other:1", "x")
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.delete("app:1")
            app.close()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(*ENDPOINT, username="app", password="wrong-password-000", socket_timeout=5).ping()
        # A refused login logs the connection out again (as on a node: it stays what it was).
        with socket.create_connection(ENDPOINT, timeout=5) as raw:
            raw.sendall(b"AUTH app wrong-password-000\r\nSET other:2 y\r\n")
            answer = b""
            while answer.count(b"\r\n") < 2:
                answer += raw.recv(4096)
            assert answer.startswith(b"-WRONGPASS") and answer.endswith(b"+OK\r\n"), answer
        assert endpoint.set("other:1", "x")  # a client not logged in is the nodes' default user
    finally:
        for ip in (*PRIMARIES, *REPLICAS):
            _client(ip).execute_command("ACL", "DELUSER", "app")


def test_past_the_ecpu_limit_requests_wait_and_none_is_refused(route: KeyRoute) -> None:
    client = redis.Redis(*ENDPOINT, socket_timeout=10)
    try:
        route.limit(1000)  # 1,000 requests of under 1 KB a second; the bucket starts full
        client.ping()
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for i in range(2500):
            pipe.set(f"ecpu:{i}", "x")
        assert all(pipe.execute())  # throttled: held back, none refused
        took = time.monotonic() - started
        assert took >= 1.2, f"2,500 requests at 1,000 ECPU/s took {took:.2f} s"
        route.limit(None)  # the limit lifted on the same connections
        started = time.monotonic()
        pipe = client.pipeline(transaction=False)
        for i in range(2500):
            pipe.get(f"ecpu:{i}")
        assert pipe.execute() == [b"x"] * 2500
        assert time.monotonic() - started < 1.0
    finally:
        route.limit(None)
        client.close()


def test_stop_ends_the_process(cluster: Cluster, binary: Path, tmp_path: Path) -> None:
    proxy = KeyRoute(binary, tmp_path / "route", KeyRouteConfig(listen=[("127.0.202.12", 6379)],
                                                                seeds=[(PRIMARIES[0], PORT)]))
    proxy.start()
    try:
        client = redis.Redis("127.0.202.12", 6379, socket_timeout=5)
        assert client.set("alive", "1")
        assert proxy.pid is not None
    finally:
        proxy.stop()
    assert proxy.pid is None


def test_the_source_compiles_without_a_warning() -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        missing("no C compiler (apt-get install gcc libssl-dev)")
    source = Path(__file__).resolve().parents[3] / "engine" / "proxy" / "keyroute.c"
    done = subprocess.run([compiler, "-Wall", "-Wextra", "-Werror", "-fsyntax-only", str(source)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def test_command_table_comes_from_the_key_specs() -> None:
    def spec(begin: list[object], find: list[object]) -> list[object]:
        return [b"flags", [], b"begin_search", begin, b"find_keys", find]

    index = [b"type", b"index", b"spec", [b"index", 1]]
    rng = [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]]
    keynum = [b"type", b"keynum", b"spec", [b"keynumidx", 0, b"firstkey", 1, b"keystep", 1]]
    streams = [b"type", b"keyword", b"spec", [b"keyword", b"STREAMS", b"startfrom", 1]]
    reply = [
        [b"get", 2, [b"readonly"], 1, 1, 1, [], [], [spec(index, rng)], []],
        [b"eval", -3, [b"noscript"], 0, 0, 0, [], [], [spec([b"type", b"index", b"spec", [b"index", 2]], keynum)], []],
        [b"xread", -4, [b"readonly", b"blocking", b"movablekeys"], 0, 0, 1, [], [], [spec(streams, rng)], []],
        [b"blpop", -3, [b"write", b"blocking"], 1, -2, 1, [], [], [spec(index, rng)], []],
        [b"object", -2, [], 0, 0, 0, [], [], [], [[b"object|encoding", 3, [], 2, 2, 1, [], [],
                                                  [spec([b"type", b"index", b"spec", [b"index", 2]], rng)], []]]],
        [b"multi", 1, [], 0, 0, 0, [], [], [], []],
        [b"dbsize", 1, [b"readonly"], 0, 0, 0, [], [], [], []],
    ]
    assert command_table(reply).splitlines() == [
        "blpop stateful", "dbsize none", "eval index 2 keynum 0 1", "get index 1 range", "multi stateful",
        "object container", "object|encoding index 2 range", "xread keyword STREAMS 1 range"]
    with pytest.raises(ProxyError):
        command_table(None)


# ---- helpers ---------------------------------------------------------------------------------

def _owner(slot: int) -> str:
    for first, last, primary, *_ in _client(PRIMARIES[0]).execute_command("CLUSTER", "SLOTS"):
        if first <= slot <= last:
            return str(primary[0])
    raise AssertionError(f"slot {slot} has no owner")


def _move_slot(slot: int, source: str, target: str, ids: dict[str, str]) -> None:
    """Move one slot and its keys as redis-cli --cluster reshard does."""
    if source == target:
        return
    src, dst = _client(source), _client(target)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", target, PORT, "", 0, 5000, "KEYS", *keys)
    for ip in PRIMARIES:
        _client(ip).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
    eventually(lambda: _owner(slot) == target, 10, 0.05, f"slot {slot} owned by {target}")


def _get_calls(ip: str) -> int:
    stats = _client(ip).info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))

