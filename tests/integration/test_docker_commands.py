"""What the docker runtime derives without a Docker engine (these run everywhere): container
commands, limits, names, image templates."""

from __future__ import annotations

import pytest

from engine.runtime.base import NodeConfig, RuntimeError_
from engine.runtime.docker import container_name, memory_limit_mb, node_command, owner_for
from engine.runtime.docker.images import Images, template_pattern

REDIS = NodeConfig("n1", "redis", "7.0.15", "127.0.100.1", 6379, 512, settings={"bind": "127.0.104.1"})


def test_redis_takes_its_config_as_arguments() -> None:
    argv = node_command(REDIS)
    assert argv[0] == "redis-server"
    pairs = " ".join(argv[1:])
    assert "--bind 127.0.100.1 127.0.104.1" in pairs and "--port 6379" in pairs
    assert "--dir /data" in pairs and "--maxmemory 512mb" in pairs
    assert "--replica-announce-ip 127.0.100.1" in pairs
    assert argv[argv.index("--logfile") + 1] == ""  # stdout: `docker logs`
    assert "--pidfile" not in argv
    # No save points by default (an empty argument); given pairs stay one directive per pair.
    assert argv[argv.index("--save") + 1] == "" and argv.count("--save") == 1
    saving = node_command(NodeConfig("n1", "redis", "7.0.15", "127.0.100.1", 6379, 512,
                                     settings={"save": "900 1 300 10"}))
    assert saving.count("--save") == 2 and saving[saving.index("--save") + 1:][:2] == ["900", "1"]


def test_ports_networking_binds_every_address_of_the_node_namespace() -> None:
    argv = node_command(REDIS, network="ports")
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == ["0.0.0.0", "--port"]
    mc = NodeConfig("m1", "memcached", "1.6.18", "127.0.0.1", 30001, 64, threads=2)
    assert node_command(mc, network="ports")[:3] == ["memcached", "-l", "0.0.0.0"]
    host = node_command(mc, runs_as_root=True)
    assert host[host.index("-l") + 1] == "127.0.0.1" and host[host.index("-u") + 1] == "root"
    assert "-P" not in host


def test_quoted_values_survive_and_injection_is_refused() -> None:
    # A directive's value is split as redis splits a config-file line (quotes group words).
    spaced = NodeConfig("n2", "redis", "7.0.15", "127.0.100.1", 6379, 64, settings={"requirepass": '"a b"'})
    argv = node_command(spaced)
    assert argv[argv.index("--requirepass") + 1] == "a b"
    with pytest.raises(ValueError):
        node_command(NodeConfig("n3", "redis", "7.0.15", "127.0.100.1", 6379, 64, settings={"x": "--dir /"}))
    with pytest.raises(ValueError):
        node_command(NodeConfig("n4", "mysql", "8.0", "127.0.100.1", 3306, 64))


def test_limits_names_and_templates() -> None:
    assert memory_limit_mb(512) == 640 and memory_limit_mb(100) == 164
    owner = owner_for("/home/me/.local/state/elasticache-local")
    assert len(owner) == 10 and owner == owner_for("/home/me/.local/state/elasticache-local")
    assert owner != owner_for("/tmp/other")
    assert container_name(owner, "n1") == f"elasticache-local-{owner}-n1"
    official = template_pattern("docker.io/library/redis:{version}")
    assert official.match("redis:7.0.15") and not official.match("redis:latest")
    assert not official.match("redis:7.0.15-alpine") and not official.match("myredis:7.0.15")
    local = template_pattern("elasticache-local/redis:{version}")
    match = local.match("elasticache-local/redis:7.0.15")
    assert match and match.group("version") == "7.0.15"


def test_a_pull_logs_its_progress_and_a_failed_pull_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    """Images.pull_image against a stub of the Docker API (no registry is reachable from the tests)."""

    class Api:
        def __init__(self, events: list[dict[str, object]]) -> None:
            self.events = events

        def pull(self, repository: str, tag: str, stream: bool, decode: bool) -> list[dict[str, object]]:
            assert (repository, tag, stream, decode) == ("redis", "7.0.15", True, True)
            return self.events

        def images(self) -> list[dict[str, object]]:
            return [{"RepoTags": ["redis:7.0.15"]}]

    images = Images(Api([
        {"status": "Pulling fs layer", "id": "a"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 1_000_000, "total": 4_000_000}},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 2_000_000, "total": 2_000_000}},
        {"status": "Pull complete", "id": "b"},
        {"status": "Status: Downloaded newer image for redis:7.0.15"},
    ]), {"redis": "redis:{version}"}, pull=True)
    with caplog.at_level("INFO", logger="engine.runtime.docker"):
        images.pull_image("redis:7.0.15")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "pulling image redis:7.0.15 (first use; progress follows)"
    assert "pulling redis:7.0.15: 3.0 of 6.0 MB, 1 layer(s) done" in lines
    assert lines[-1].startswith("pulled redis:7.0.15 in ")
    assert images.versions() == {"redis": ("7.0.15",)}  # offered from now on

    failing = Images(Api([{"error": "manifest for redis:7.0.15 not found"}]), {"redis": "redis:{version}"}, pull=True)
    with pytest.raises(RuntimeError_, match=r"manifest for redis:7\.0\.15 not found") as caught:
        failing.pull_image("redis:7.0.15")
    assert not caught.value.temporary
