"""Files and directories only this user may read: the data directory holds node data (keys and
values), configuration files with passwords, ACL files and CA keys, so nothing under it is left
readable by the group or by others, whatever the umask says.

`private_dir` and `write_private` are what every writer under the data directory uses;
`PRIVATE_UMASK` is the umask of the processes the runtimes start (redis-server writes its RDB,
AOF and pid files itself, with the umask it inherits).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import threading
from pathlib import Path
from typing import BinaryIO, cast

__all__ = ["PRIVATE_UMASK", "copy_private", "make_private", "open_private", "private_dir", "write_private"]

PRIVATE_UMASK = 0o077
_FILE_MODE = 0o600
_DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a directory of mode 0700: made if missing, with every missing parent made 0700
    too; an existing one is narrowed. Parents that exist keep their mode (a user's own
    ~/.local/state is theirs to set)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another thread
            directory.mkdir(mode=_DIR_MODE)
        os.chmod(directory, _DIR_MODE)  # mkdir's mode is narrowed by the umask, never widened
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, _DIR_MODE)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` atomically (a new file renamed over the old one), mode 0600 from
    its creation: no moment where another user could open it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    try:
        with open_private(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_private(path: Path, mode: str = "wb") -> BinaryIO:
    """`open(path, mode)` for "wb" or "ab", the file created with mode 0600 (and an existing one
    narrowed to it)."""
    flags = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}[mode]
    fd = os.open(path, flags | os.O_CLOEXEC, _FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, _FILE_MODE)
        return cast(BinaryIO, os.fdopen(fd, mode))
    except BaseException:
        os.close(fd)
        raise


def copy_private(source: Path, dest: Path) -> None:
    """Copy the contents of `source` to a new file `dest` of mode 0600."""
    open_private(dest, "wb").close()
    shutil.copyfile(source, dest)  # into the file made above: its mode stays; sendfile where it can


def make_private(path: Path) -> None:
    """Narrow an existing file (0600) or directory (0700) to this user; nothing there is fine."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    wanted = _DIR_MODE if stat.S_ISDIR(mode) else _FILE_MODE
    if stat.S_IMODE(mode) & 0o077:
        os.chmod(path, wanted)
