"""What the docker runtime derives without a Docker engine (these run everywhere): container
commands, limits, names, image templates."""

from __future__ import annotations

import itertools

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


def test_a_failed_pull_is_told_once_with_the_remedy_retried_with_backoff_and_the_image_used_once_there(
        caplog: pytest.LogCaptureFixture) -> None:
    """Images.user_of against a stub of the Docker API whose registry never answers, and a clock
    of the test's: the pull is tried again after 2, 4, 8... s (at most every 60 s), the failure is
    one warning with what to do and the same error each time, and an image that appears (tagged or
    built by hand) is used at once, without waiting for the next pull."""
    import docker.errors

    class Api:
        def __init__(self) -> None:
            self.pulls = 0
            self.present = False

        def inspect_image(self, image: str) -> dict[str, object]:
            if not self.present:
                raise docker.errors.ImageNotFound(f"no such image: {image}")
            return {"Config": {"User": "redis"}}

        def pull(self, repository: str, tag: str, stream: bool, decode: bool) -> list[dict[str, object]]:
            self.pulls += 1
            raise ConnectionError("registry unreachable")

        def images(self) -> list[dict[str, object]]:
            return []

    now = [100.0]
    api = Api()
    images = Images(api, {"redis": "redis:{version}"}, pull=True, offered={"redis": ["7.0.15"]},
                    monotonic=lambda: now[0])
    config = NodeConfig("n1", "redis", "7.0.15", "127.0.100.1", 6379, 64)

    def attempt() -> str:
        with pytest.raises(RuntimeError_) as caught:
            images.user_of("redis:7.0.15", config)
        assert not caught.value.temporary
        return str(caught.value)

    with caplog.at_level("DEBUG", logger="engine.runtime.docker"):
        first = attempt()
        assert "cannot pull redis:7.0.15: registry unreachable" in first
        assert "`docker pull redis:7.0.15`" in first and "deploy/build-images.sh" in first
        assert "DOCKER_IMAGE_* settings" in first
        pulls_at: list[float] = [now[0]]
        for _ in range(60):  # two simulated minutes, a caller retrying every 2 s
            now[0] += 2.0
            pulls = api.pulls
            assert attempt() == first  # the same words every time
            if api.pulls > pulls:
                pulls_at.append(now[0])
    gaps = [b - a for a, b in itertools.pairwise(pulls_at)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0] and gaps[5:] == [60.0] * (len(gaps) - 5), gaps
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith(first), warnings
    told = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert told == ["pulling image redis:7.0.15 (first use; progress follows)"]  # not once per retry

    api.present = True  # `docker tag` / build-images.sh: there now, between two pulls
    pulls = api.pulls
    now[0] += 2.0
    assert images.user_of("redis:7.0.15", config) == "redis"
    assert api.pulls == pulls
