"""AWS's catalogue: node types, engine versions and parameter-group families, AZs.

Facts from the ElastiCache user guide ("Supported node types", "Supported engines and
versions"); memory is the node's memory for data in GiB, as AWS lists it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from engine import nearest


@dataclass(frozen=True)
class NodeType:
    name: str
    memory_gib: float
    vcpus: int

    @property
    def memory_mb(self) -> int:
        return max(1, int(self.memory_gib * 1024))


def _family(prefix: str, sizes: list[tuple[str, float, int]]) -> list[NodeType]:
    return [NodeType(f"cache.{prefix}.{size}", mem, cpu) for size, mem, cpu in sizes]


_GRAVITON_M = [("large", 6.38, 2), ("xlarge", 12.93, 4), ("2xlarge", 26.04, 8), ("4xlarge", 52.26, 16),
               ("8xlarge", 103.68, 32), ("12xlarge", 157.12, 48), ("16xlarge", 209.55, 64)]
_GRAVITON_R = [("large", 13.07, 2), ("xlarge", 26.32, 4), ("2xlarge", 52.82, 8), ("4xlarge", 105.81, 16),
               ("8xlarge", 209.55, 32), ("12xlarge", 317.77, 48), ("16xlarge", 419.09, 64)]

NODE_TYPES: dict[str, NodeType] = {
    t.name: t
    for t in [
        *_family("t2", [("micro", 0.555, 1), ("small", 1.55, 1), ("medium", 3.22, 2)]),
        *_family("t3", [("micro", 0.5, 2), ("small", 1.37, 2), ("medium", 3.09, 2)]),
        *_family("t4g", [("micro", 0.5, 2), ("small", 1.37, 2), ("medium", 3.09, 2)]),
        *_family("m3", [("medium", 2.78, 1), ("large", 6.05, 2), ("xlarge", 13.3, 4), ("2xlarge", 27.9, 8)]),
        *_family("m4", [("large", 6.42, 2), ("xlarge", 14.28, 4), ("2xlarge", 29.7, 8),
                        ("4xlarge", 60.78, 16), ("10xlarge", 154.64, 40)]),
        *_family("m5", [("large", 6.38, 2), ("xlarge", 12.93, 4), ("2xlarge", 26.04, 8),
                        ("4xlarge", 52.26, 16), ("12xlarge", 157.12, 48), ("24xlarge", 314.32, 96)]),
        *_family("m6g", _GRAVITON_M),
        *_family("m7g", _GRAVITON_M),
        *_family("r3", [("large", 13.5, 2), ("xlarge", 28.4, 4), ("2xlarge", 58.2, 8),
                        ("4xlarge", 118.0, 16), ("8xlarge", 237.0, 32)]),
        *_family("r4", [("large", 12.3, 2), ("xlarge", 25.05, 4), ("2xlarge", 50.47, 8),
                        ("4xlarge", 101.38, 16), ("8xlarge", 203.26, 32), ("16xlarge", 407.0, 64)]),
        *_family("r5", [("large", 13.07, 2), ("xlarge", 26.32, 4), ("2xlarge", 52.82, 8),
                        ("4xlarge", 105.81, 16), ("12xlarge", 317.77, 48), ("24xlarge", 635.61, 96)]),
        *_family("r6g", _GRAVITON_R),
        *_family("r7g", _GRAVITON_R),
        *_family("r6gd", [("xlarge", 26.32, 4), ("2xlarge", 52.82, 8), ("4xlarge", 105.81, 16),
                          ("8xlarge", 209.55, 32), ("12xlarge", 317.77, 48), ("16xlarge", 419.1, 64)]),
        *_family("c7gn", [("large", 3.09, 2), ("xlarge", 6.38, 4), ("2xlarge", 12.94, 8),
                          ("4xlarge", 26.05, 16), ("8xlarge", 52.26, 32), ("12xlarge", 78.56, 48),
                          ("16xlarge", 105.81, 64)]),
        # Previous generation.
        *_family("t1", [("micro", 0.213, 1)]),
        *_family("m1", [("small", 1.3, 1), ("medium", 3.35, 1), ("large", 7.1, 2), ("xlarge", 14.6, 4)]),
        *_family("m2", [("xlarge", 16.7, 2), ("2xlarge", 33.8, 4), ("4xlarge", 68.0, 8)]),
        *_family("c1", [("xlarge", 6.6, 8)]),
    ]
}

# memcached's worker threads follow the node's vCPUs, capped: more threads than this machine has
# cores only adds context switches.
MAX_MEMCACHED_THREADS = 16


@dataclass(frozen=True)
class EngineVersion:
    engine: str
    version: str  # as AWS lists it
    family: str
    description: str
    # The release AWS runs for this line and reports in every cache, snapshot and event ("7.1"
    # runs 7.1.0): Terraform compares its engine_version with it by major.minor.
    release: str


# AWS's release of each major.minor line it lists without a patch (the ElastiCache user guide's
# "Supported engines and versions"); a line listed with its patch is its own release.
_RELEASES = {("redis", "6.0"): "6.0.5", ("redis", "6.2"): "6.2.6", ("redis", "7.0"): "7.0.7",
             ("redis", "7.1"): "7.1.0", ("valkey", "7.2"): "7.2.6", ("valkey", "8.0"): "8.0.1",
             ("valkey", "8.1"): "8.1.1"}


def _versions(engine: str, rows: list[tuple[str, str]], description: str) -> list[EngineVersion]:
    return [EngineVersion(engine, v, fam, f"{description} {v}", _RELEASES.get((engine, v), v)) for v, fam in rows]


ENGINE_VERSIONS: list[EngineVersion] = [
    *_versions("memcached", [("1.4.5", "memcached1.4"), ("1.4.14", "memcached1.4"),
                             ("1.4.24", "memcached1.4"), ("1.4.33", "memcached1.4"),
                             ("1.4.34", "memcached1.4"), ("1.5.10", "memcached1.5"),
                             ("1.5.16", "memcached1.5"), ("1.6.6", "memcached1.6"),
                             ("1.6.12", "memcached1.6"), ("1.6.17", "memcached1.6"),
                             ("1.6.22", "memcached1.6")], "memcached version"),
    *_versions("redis", [("2.6.13", "redis2.6"), ("2.8.6", "redis2.8"), ("2.8.19", "redis2.8"),
                         ("2.8.21", "redis2.8"), ("2.8.22", "redis2.8"), ("2.8.23", "redis2.8"),
                         ("2.8.24", "redis2.8"), ("3.2.4", "redis3.2"), ("3.2.6", "redis3.2"),
                         ("3.2.10", "redis3.2"), ("4.0.10", "redis4.0"), ("5.0.0", "redis5.0"),
                         ("5.0.3", "redis5.0"), ("5.0.4", "redis5.0"), ("5.0.5", "redis5.0"),
                         ("5.0.6", "redis5.0"), ("6.0", "redis6.x"), ("6.2", "redis6.x"),
                         ("7.0", "redis7"), ("7.1", "redis7")], "Redis"),
    *_versions("valkey", [("7.2", "valkey7"), ("8.0", "valkey8"), ("8.1", "valkey8")], "Valkey"),
]

DEFAULT_VERSIONS = {"redis": "7.1", "valkey": "8.1", "memcached": "1.6.22"}
DEFAULT_PORTS = {"redis": 6379, "valkey": 6379, "memcached": 11211}


def known_version(engine: str, version: str) -> EngineVersion | None:
    """AWS's entry for a requested version: exact ("7.0", "5.0.6"), a patch of a major.minor
    entry ("7.0.7" -> 7.0), or the "6.x" wildcard AWS accepts for Redis 6."""
    entries = [v for v in ENGINE_VERSIONS if v.engine == engine]
    for entry in entries:
        if entry.version == version:
            return entry
    if engine == "redis" and version == "6.x":
        return next(v for v in entries if v.version == "6.2")
    parts = version.split(".")
    if len(parts) == 3 and all(p.isdigit() for p in parts):
        for entry in entries:
            if entry.version == f"{parts[0]}.{parts[1]}":
                return entry
    return None


def aws_release(engine: str, version: str) -> str:
    """The release AWS reports for a requested (or stored) version: "7.1" -> "7.1.0", "6.x" ->
    "6.2.6", "7.0.5" -> "7.0.7", "1.6.22" -> "1.6.22"; a version AWS does not list, as given."""
    entry = known_version(engine, version)
    return entry.release if entry is not None else version


def family_of(engine: str, version: str) -> str:
    entry = known_version(engine, version)
    if entry is not None:
        return entry.family
    major = version.split(".")[0]
    return f"{engine}{major}" if engine != "memcached" else f"memcached{'.'.join(version.split('.')[:2])}"


# AZ letters per region are AWS's; a region we do not list gets a, b, c.
_AZ_LETTERS = {"us-east-1": "abcdef", "us-west-2": "abcd", "ap-northeast-1": "acd"}


def availability_zones(region: str) -> list[str]:
    return [f"{region}{letter}" for letter in _AZ_LETTERS.get(region, "abc")]


# Default maintenance windows fall in an 8-hour block per region (us-east-1: 03:00-11:00 UTC).
MAINTENANCE_BLOCK_START_HOUR = {"us-east-1": 3, "us-west-2": 6, "eu-west-1": 22, "eu-central-1": 23}


def resolve_version(
    engine: str, requested: str, available: Mapping[str, Sequence[str]], strict: bool
) -> tuple[str | None, bool]:
    """The installed version to run for an AWS engine version, and whether it is a match.

    "7.0" or "7.0.7" runs any installed 7.0.x (a match). Otherwise the nearest installed
    version of the same major is used, and failing that (non-strict only) the newest installed
    version of the engine; both are reported as not a match so the caller can warn.
    """
    installed = list(available.get(engine, ()))
    if not installed:
        return None, False
    wanted = "6.2" if requested == "6.x" else requested
    parts = wanted.split(".")
    prefix = ".".join(parts[:2])
    exact = [v for v in installed if v in (wanted, prefix) or v.startswith(prefix + ".")]
    if exact:
        return max(exact, key=version_key), True
    if strict:
        return None, False
    same_major = nearest(wanted, installed)
    if same_major is not None:
        return same_major, False
    return max(installed, key=version_key), False


def version_key(version: str) -> tuple[int, ...]:
    """A version as numbers, for comparing: "7.0.15" -> (7, 0, 15); "6.x" -> (6, 0)."""
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
