"""Files under the data directory are this user's only, whatever the umask: the helpers every
writer there uses (engine.files)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.files import copy_private, make_private, open_private, private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022: without the helpers, files would be readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_write_private_is_0600_from_the_start_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "node.conf"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "requirepass secret\n")
    assert path.read_text() == "requirepass secret\n" and mode(path) == 0o600
    write_private(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.conf"]  # no temporary file left


def test_private_dir_makes_and_narrows(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    fresh = private_dir(tmp_path / "a" / "b")
    assert mode(fresh) == mode(tmp_path / "a") == 0o700  # what it made, parents too
    assert mode(tmp_path) == 0o755  # what was there stays as it was
    existing = tmp_path / "wide"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    private_dir(existing)
    assert mode(existing) == 0o700


def test_open_private_creates_and_narrows(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    with open_private(log, "ab") as f:
        f.write(b"one\n")
    assert mode(log) == 0o600
    os.chmod(log, 0o644)
    with open_private(log, "ab") as f:
        f.write(b"two\n")
    assert log.read_bytes() == b"one\ntwo\n" and mode(log) == 0o600


def test_copy_private_and_make_private(tmp_path: Path) -> None:
    source = tmp_path / "dump.rdb"
    source.write_bytes(b"REDIS0011" * 1000)
    os.chmod(source, 0o644)
    copy = tmp_path / "copy.rdb"
    copy_private(source, copy)
    assert copy.read_bytes() == source.read_bytes() and mode(copy) == 0o600
    make_private(source)
    assert mode(source) == 0o600
    make_private(tmp_path / "missing")  # nothing there is fine
