from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import PurePath

import pytest

from engine.access import Reach
from engine.adapters import adapter_for
from engine.adapters.memcached import MemcachedAdapter, argv
from engine.adapters.memcached import probe as memcached_probe
from engine.adapters.redis import RedisAdapter, RespError, RespReply, _Reader, parse_info, render_config
from engine.adapters.redis import probe as redis_probe
from engine.runtime.base import NodeConfig

NODE_DIR = PurePath("/data/nodes/n1")


def redis_config(**kw: object) -> NodeConfig:
    base: dict[str, object] = dict(
        name="n1", engine="redis", version="7.0.15", host="127.0.200.5", port=6379, memory_mb=128
    )
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_redis_config_defaults() -> None:
    lines = directives(render_config(redis_config(), NODE_DIR))
    for expected in [
        "bind 127.0.200.5",
        "port 6379",
        "dir /data/nodes/n1",
        "dbfilename dump.rdb",
        "pidfile /data/nodes/n1/node.pid",
        "logfile /data/nodes/n1/node.log",
        "daemonize no",
        "protected-mode no",
        "maxmemory 128mb",
        "maxmemory-policy volatile-lru",
        "repl-diskless-sync-delay 0",
        "replica-announce-ip 127.0.200.5",
        "repl-diskless-sync yes",
        "appendonly no",
        'save ""',
        'proc-title-template "{title} {listen-addr} {server-mode} {config-file}"',
    ]:
        assert expected in lines


def test_redis_settings_replace_defaults_and_add_directives() -> None:
    config = redis_config(
        settings={"save": "900 1 300 10", "maxmemory-policy": "allkeys-lru", "appendonly": "yes",
                  "bind": "127.0.200.9"}
    )
    lines = directives(render_config(config, NODE_DIR))
    assert "save 900 1" in lines and "save 300 10" in lines and 'save ""' not in lines
    assert "maxmemory-policy allkeys-lru" in lines and "maxmemory-policy volatile-lru" not in lines
    assert "appendonly yes" in lines and "appendonly no" not in lines
    assert "bind 127.0.200.5 127.0.200.9" in lines  # extra addresses, own address first


def test_redis_multi_word_settings_are_passed_through() -> None:
    config = redis_config(settings={"client-output-buffer-limit": "pubsub 32mb 8mb 60"})
    assert "client-output-buffer-limit pubsub 32mb 8mb 60" in directives(render_config(config, NODE_DIR))


@pytest.mark.parametrize(
    "settings",
    [
        {"maxmemory": "1mb\nrequirepass x"},
        {"bad key": "1"},
        {"": "1"},
        {"port": "6380"},
        {"dir": "/tmp"},
        {"daemonize": "yes"},
        {"include": "/etc/passwd"},
        {"save": "60"},
    ],
)
def test_redis_invalid_settings(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        render_config(redis_config(settings=settings), NODE_DIR)


def test_redis_paths_with_spaces_are_quoted() -> None:
    lines = directives(render_config(redis_config(), PurePath('/data/my "nodes"/n1')))
    assert 'dir "/data/my \\"nodes\\"/n1"' in lines


def test_old_redis_versions_get_the_directives_they_know() -> None:
    lines = directives(render_config(redis_config(version="6.0.20"), NODE_DIR))
    assert not any(line.startswith("proc-title-template") for line in lines)
    lines = directives(render_config(redis_config(version="4.0.14"), NODE_DIR))
    assert "slave-announce-ip 127.0.200.5" in lines
    lines = directives(render_config(redis_config(engine="valkey", version="7.2.5"), NODE_DIR))
    assert any(line.startswith("proc-title-template") for line in lines)


def test_redis_launch() -> None:
    launch = RedisAdapter().launch(redis_config(), "/usr/bin/redis-server", NODE_DIR)
    assert launch.argv == ("/usr/bin/redis-server", "/data/nodes/n1/node.conf")
    assert launch.marker == "/data/nodes/n1/node.conf"
    assert set(launch.files) == {"node.conf"}
    assert not launch.notify and "supervised" not in launch.files["node.conf"]


def test_redis_launch_with_readiness_reports() -> None:
    launch = RedisAdapter().launch(redis_config(), "/usr/bin/redis-server", NODE_DIR, notify=True)
    assert launch.notify
    assert "supervised systemd" in directives(launch.files["node.conf"])
    with pytest.raises(ValueError):  # the runtime's directive: settings cannot turn it off
        render_config(redis_config(settings={"supervised": "no"}), NODE_DIR, notify=True)


def mc_config(**kw: object) -> NodeConfig:
    base: dict[str, object] = dict(
        name="m1",
        engine="memcached",
        version="1.6.18",
        host="127.0.200.6",
        port=11211,
        memory_mb=64,
        threads=2,
    )
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


def test_memcached_argv() -> None:
    args = argv(mc_config(), "/usr/bin/memcached", pidfile=NODE_DIR / "node.pid")
    assert args == [
        "/usr/bin/memcached",
        *("-l", "127.0.200.6", "-p", "11211", "-U", "0", "-m", "64", "-t", "2", "-c", "4096"),
        *("-P", "/data/nodes/n1/node.pid"),
    ]
    assert argv(mc_config(), "memcached", pidfile=None, run_as_root=True)[-2:] == ["-u", "root"]


def test_memcached_settings() -> None:
    args = argv(mc_config(settings={"--conn-limit": "1024", "-o": "modern", "-L": ""}), "memcached", pidfile=None)
    assert args[args.index("-c") + 1] == "1024" and args.count("-c") == 1
    assert args[args.index("-o") + 1] == "modern"
    assert args[-1] == "-L"


@pytest.mark.parametrize("settings", [{"-l": "0.0.0.0"}, {"--port": "1"}, {"-d": ""}, {"c": "1"}, {"-c": "1\n"}])
def test_memcached_invalid_settings(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        argv(mc_config(settings=settings), "memcached", pidfile=None)


def test_memcached_launch_marker_is_the_pid_file() -> None:
    launch = MemcachedAdapter().launch(mc_config(), "/usr/bin/memcached", NODE_DIR)
    assert launch.marker == "/data/nodes/n1/node.pid" and "/data/nodes/n1/node.pid" in launch.argv
    # memcached cannot report readiness: asked to, it says it will not (probes find it).
    assert not MemcachedAdapter().launch(mc_config(), "/usr/bin/memcached", NODE_DIR, notify=True).notify


def test_adapter_for() -> None:
    assert isinstance(adapter_for("redis"), RedisAdapter)
    assert isinstance(adapter_for("valkey"), RedisAdapter)
    assert isinstance(adapter_for("memcached"), MemcachedAdapter)
    with pytest.raises(ValueError):
        adapter_for("mysql")


# --- RESP and probes against scripted servers ---


def read_all(data: bytes) -> list[RespReply]:
    a, b = socket.socketpair()
    try:
        b.sendall(data)
        b.close()
        reader = _Reader(a, time.monotonic() + 1)
        replies = []
        while True:
            try:
                replies.append(reader.reply())
            except ConnectionError:
                return replies
    finally:
        a.close()


def test_resp_reader() -> None:
    replies = read_all(b"+PONG\r\n-ERR no\r\n:42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n")
    assert replies[0] == "PONG"
    assert isinstance(replies[1], RespError) and str(replies[1]) == "ERR no"
    assert replies[2:] == [42, b"he\r\nl", None, [b"a", [1]]]


def test_parse_info() -> None:
    info = parse_info(b"# Replication\r\nrole:slave\r\nmaster_host:127.0.200.1\r\n\r\nmaster_link_status:up\r\n")
    assert info == {"role": "slave", "master_host": "127.0.200.1", "master_link_status": "up"}


@pytest.fixture
def scripted_server() -> Iterator[Callable[[bytes | None], tuple[str, int]]]:
    """A one-connection server on a test loopback address that answers with fixed bytes after
    reading the request (None: never answers)."""
    sockets: list[socket.socket] = []

    def make(answer: bytes | None) -> tuple[str, int]:
        srv = socket.socket()
        srv.bind(("127.0.200.250", 0))
        srv.listen(1)
        sockets.append(srv)

        def serve() -> None:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            sockets.append(conn)
            conn.recv(65536)
            if answer is not None:
                conn.sendall(answer)

        threading.Thread(target=serve, daemon=True).start()
        host, port = srv.getsockname()
        return host, port

    yield make
    for s in sockets:
        s.close()


def bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def test_redis_probe_parses_role_and_version(
    scripted_server: Callable[[bytes | None], tuple[str, int]],
) -> None:
    answer = (
        b"+PONG\r\n"
        + bulk("# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nslave_repl_offset:12\r\n")
        + bulk("# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.8\r\n")
    )
    result = redis_probe(Reach(*scripted_server(answer)), timeout=1.0)
    assert result.ok and result.error is None
    assert result.role == "slave" and result.version == "8.1.8"
    assert result.details["master_link_status"] == "up" and result.details["slave_repl_offset"] == "12"
    assert result.latency_ms >= 0


def test_redis_probe_error_reply(scripted_server: Callable[[bytes | None], tuple[str, int]]) -> None:
    answer = b"-NOAUTH Authentication required.\r\n" * 3
    result = redis_probe(Reach(*scripted_server(answer)), timeout=1.0)
    assert not result.ok and result.error == "NOAUTH Authentication required." and result.role is None


def test_redis_probe_timeout(scripted_server: Callable[[bytes | None], tuple[str, int]]) -> None:
    started = time.monotonic()
    result = redis_probe(Reach(*scripted_server(None)), timeout=0.2)
    assert not result.ok and result.error == "timed out"
    assert 0.15 < time.monotonic() - started < 1.0


def test_redis_probe_garbage(scripted_server: Callable[[bytes | None], tuple[str, int]]) -> None:
    result = redis_probe(Reach(*scripted_server(b"HTTP/1.1 400 Bad Request\r\n\r\n")), timeout=1.0)
    assert not result.ok and "not a RESP reply" in (result.error or "")


def test_probes_of_a_closed_port_fail_without_raising() -> None:
    for probe in (redis_probe, memcached_probe):
        result = probe(Reach("127.0.200.251", 1), timeout=0.5)
        assert not result.ok and result.error == "Connection refused"


def test_memcached_probe(scripted_server: Callable[[bytes | None], tuple[str, int]]) -> None:
    result = memcached_probe(Reach(*scripted_server(b"VERSION 1.6.18\r\n")), timeout=1.0)
    assert result.ok and result.version == "1.6.18" and result.role is None
    result = memcached_probe(Reach(*scripted_server(b"ERROR\r\n")), timeout=1.0)
    assert not result.ok and "unexpected reply" in (result.error or "")
    result = memcached_probe(Reach(*scripted_server(None)), timeout=0.2)
    assert not result.ok and result.error == "timed out"
