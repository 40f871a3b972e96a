"""The fake runtime's RDB files: a real magic and ending (check_rdb accepts them), the JSON of
the saved node and its data in between."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from engine.files import write_private
from engine.rdb import RdbError, check_rdb
from engine.runtime.base import RuntimeError_

__all__ = ["CORRUPT", "load_fake_seed", "read_fake_rdb", "write_fake_rdb"]

_FAKE_RDB_HEAD = b"REDIS0011\xfa"
_FAKE_RDB_TAIL = b"\xff" + bytes(8)
# In a file given as a seed, the fake node's load fails on it (a corruption only a load finds).
CORRUPT = b"CORRUPT"


def read_fake_rdb(path: Path) -> tuple[str, dict[str, str]]:
    """(the node it was saved from, its data) of a file FakeRuntime.save_rdb wrote."""
    content = Path(path).read_bytes()
    record = json.loads(content[len(_FAKE_RDB_HEAD):-len(_FAKE_RDB_TAIL)])
    return str(record["node"]), {str(k): str(v) for k, v in record["data"].items()}


def write_fake_rdb(dest: Path, node: str, data: Mapping[str, str]) -> int:
    """Write the fake RDB of `node` holding `data` as `dest` (complete or not at all); its size."""
    content = _FAKE_RDB_HEAD + json.dumps({"node": node, "data": dict(data)}).encode() + _FAKE_RDB_TAIL
    write_private(Path(dest), content)  # complete or not at all, this user's only (as real saves)
    return len(content)


def load_fake_seed(seed: str) -> dict[str, str] | None:
    """The data in a seed; None when a node cannot load it (it would exit)."""
    path = Path(seed)
    if not path.is_file():
        raise RuntimeError_(f"no seed file {seed}", temporary=False)
    try:
        check_rdb(path)
    except RdbError:
        return None
    if CORRUPT in path.read_bytes():
        return None
    try:
        return read_fake_rdb(path)[1]
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a real RDB: the fake does not read it
