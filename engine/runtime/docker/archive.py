"""Files into a container that has not started: a tar archive for Docker's archive API, built
while it is sent (headers, file chunks, padding), so a seed of any size never sits in memory.

The images have no shell or tools to run inside, and a stopped container runs nothing: the
archive API is the one way to put a node's start data into its volume."""

from __future__ import annotations

import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath

from engine.adapters.redis import DataFile
from engine.runtime.base import RuntimeError_

__all__ = ["tar_stream"]

_CHUNK = 1 << 20
_BLOCK = 512
# Whoever extraction makes the owner (root, or the tar's ids), the node's user must be able to
# read these and write beside them (the AOF directory) and into them (the AOF increment).
_FILE_MODE = 0o666
_DIR_MODE = 0o777


def tar_stream(files: Sequence[DataFile]) -> Iterator[bytes]:
    """The archive of `files` (paths relative to the extraction directory), as chunks. Sources
    are looked at before the first chunk: a missing seed raises RuntimeError_ here, not while
    Docker reads the stream."""
    now = int(time.time())
    entries: list[tuple[tarfile.TarInfo, DataFile]] = []
    dirs: set[str] = set()
    for item in files:
        path = PurePosixPath(item.path)
        for parent in reversed(path.parents[:-1]):
            if str(parent) not in dirs:
                dirs.add(str(parent))
                entries.append((_info(str(parent), 0, now, tarfile.DIRTYPE), item))
        if item.source is None:
            size = len(item.content)
        else:
            try:
                size = os.stat(item.source).st_size
            except FileNotFoundError:
                raise RuntimeError_(f"no seed file {item.source}", temporary=False) from None
            except OSError as exc:
                raise RuntimeError_(f"cannot read {item.source}: {exc.strerror or exc}", temporary=False) from exc
        entries.append((_info(str(path), size, now, tarfile.REGTYPE), item))
    return _chunks(entries)


def _chunks(entries: list[tuple[tarfile.TarInfo, DataFile]]) -> Iterator[bytes]:
    for info, item in entries:
        yield info.tobuf(format=tarfile.GNU_FORMAT)
        if info.type != tarfile.REGTYPE:
            continue
        if item.source is None:
            sent = len(item.content)
            yield item.content
        else:
            sent = 0
            with open(item.source, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sent += len(chunk)
                    yield chunk
        if sent != info.size:
            raise RuntimeError_(f"{item.source} changed size while it was sent ({info.size} -> {sent} bytes)")
        if sent % _BLOCK:
            yield bytes(_BLOCK - sent % _BLOCK)
    yield bytes(2 * _BLOCK)  # the end of the archive


def _info(name: str, size: int, mtime: int, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.type = kind
    info.mode = _DIR_MODE if kind == tarfile.DIRTYPE else _FILE_MODE
    return info
