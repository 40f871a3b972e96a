from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from engine.versions import Binary, discover, nearest, parse_version, parse_version_output
from tests.requires import needs


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d7c971a948f0",
            ("redis", "7.0.15"),
        ),
        (
            "Valkey server v=8.1.8 sha=00000000:1 malloc=libc bits=64 build=7eb4ebc9d7e91f4e",
            ("valkey", "8.1.8"),
        ),
        ("Redis server v=6.2.14 sha=00000000:0 malloc=jemalloc-5.2.1 bits=64 build=1", ("redis", "6.2.14")),
        ("memcached 1.6.18\n", ("memcached", "1.6.18")),
        ("memcached 1.6.38", ("memcached", "1.6.38")),
        ("KeyDB server v=6.3.4 sha=00000000:0", None),
        ("bash: redis-server: command not found", None),
        ("", None),
    ],
)
def test_parse_version_output(output: str, expected: tuple[str, str] | None) -> None:
    assert parse_version_output(output) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7.0.15", (7, 0, 15)),
        ("7.0", (7, 0)),
        ("6.x", (6,)),
        ("v7.2.4", (7, 2, 4)),
        ("7.2.4-rc1", (7, 2, 4)),
        ("1.6.18", (1, 6, 18)),
        ("", ()),
        ("latest", ()),
    ],
)
def test_parse_version(text: str, expected: tuple[int, ...]) -> None:
    assert parse_version(text) == expected


INSTALLED = ["7.0.15", "6.2.14", "7.2.4", "6.0.20"]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("7.0", "7.0.15"),  # prefix match
        ("7.0.15", "7.0.15"),  # exact
        ("6.2", "6.2.14"),
        ("7.2", "7.2.4"),
        ("7", "7.2.4"),  # highest of the major
        ("6.x", "6.2.14"),  # the managed service's "6.x"
        ("7.1", "7.0.15"),  # no 7.1: the highest below it, never a newer one
        ("6.1", "6.0.20"),
        ("7.0.20", "7.0.15"),
        ("7.0.5", "7.0.15"),  # nothing of 7.x below 7.0.5: the lowest above
        ("5.0.6", None),  # no 5.x installed
        ("8.0", None),
        ("", None),
        ("latest", None),
    ],
)
def test_nearest(requested: str, expected: str | None) -> None:
    assert nearest(requested, INSTALLED) == expected


def test_nearest_does_not_confuse_7_1_with_7_10() -> None:
    assert nearest("7.1", ["7.10.0", "7.0.1"]) == "7.0.1"
    assert nearest("7.1", ["7.10.0"]) == "7.10.0"  # only above: the lowest above


def test_nearest_prefers_highest_below_over_lowest_above() -> None:
    assert nearest("7.1", ["7.0.15", "7.2.4"]) == "7.0.15"
    assert nearest("7.1.0", ["7.2.4", "7.4.0"]) == "7.2.4"


def test_nearest_memcached() -> None:
    assert nearest("1.6.22", ["1.6.18"]) == "1.6.18"
    assert nearest("1.6.12", ["1.6.18", "1.5.22"]) == "1.5.22"  # below wins, even a minor down
    assert nearest("1.4.5", ["1.6.18"]) == "1.6.18"


def _fake_binary(directory: Path, name: str, output: str) -> Path:
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_discover_reads_versions_from_the_binaries(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _fake_binary(a, "redis-server", "Redis server v=7.0.15 sha=0 malloc=libc bits=64")
    _fake_binary(b, "redis-server", "Redis server v=7.2.4 sha=0 malloc=libc bits=64")
    # some distributions install valkey under the redis name: the output decides
    c = tmp_path / "c"
    c.mkdir()
    _fake_binary(c, "redis-server", "Valkey server v=8.0.2 sha=0 malloc=libc bits=64")
    _fake_binary(a, "memcached", "memcached 1.6.18")
    _fake_binary(a, "valkey-server", "not a server")
    found = discover(search_path=f"{a}:{b}:{c}:{a}", include_embedded=False)
    assert found == {
        "redis": [
            Binary("redis", "7.2.4", b / "redis-server"),
            Binary("redis", "7.0.15", a / "redis-server"),
        ],
        "valkey": [Binary("valkey", "8.0.2", c / "redis-server")],
        "memcached": [Binary("memcached", "1.6.18", a / "memcached")],
    }


def test_discover_extra_paths_come_first_and_may_name_files(tmp_path: Path) -> None:
    (tmp_path / "opt").mkdir()
    (tmp_path / "bin").mkdir()
    custom = _fake_binary(tmp_path / "opt", "redis-server", "Redis server v=7.0.15 sha=0")
    default = _fake_binary(tmp_path / "bin", "redis-server", "Redis server v=7.0.15 sha=0")
    found = discover([custom], search_path=str(tmp_path / "bin"), include_embedded=False)
    assert [b.path for b in found["redis"]] == [custom, default]
    found = discover([tmp_path / "opt"], search_path="", include_embedded=False)
    assert [b.path for b in found["redis"]] == [custom]


def test_discover_nothing(tmp_path: Path) -> None:
    assert discover(search_path=str(tmp_path), include_embedded=False) == {}


@needs(shutil.which("redis-server"), "redis-server is not installed")
def test_discover_finds_the_installed_redis() -> None:
    found = discover()
    assert found["redis"], found
    redis = found["redis"][0]
    assert redis.path.name == "redis-server"  # the name it runs as, not a resolved symlink
    assert parse_version(redis.version) >= (5,)
