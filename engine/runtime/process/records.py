"""The process runtime's record of each node, and the node's directory on disk.

Every node lives in `<data_dir>/<name>/` with
  node.json  the NodeConfig, the binary and the process marker (so a new runtime finds the node),
             and the node's own ports behind a TLS-preferred forwarder
  node.conf  the redis/valkey config file (rewritten at every start)
  users.acl  redis/valkey ACL users, sasl/  memcached SASL users (nodes with security)
Files the runtime writes are the owner's only: the config and node.json may hold passwords.
  node.pid   the node's pid (written by the runtime right after the fork, and by the engine)
  node.log   the engine's log, stdout and stderr
  dump.rdb   redis/valkey data (at each start: the seed, or empty unless the node persists)

A removed node's directory is renamed into `<data_dir>/.trash/` (instant) and deleted there by a
background thread, so a delete does not wait for the file system; leftovers of a crash are
deleted by the next runtime.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.adapters.redis import DataFile
from engine.files import copy_private, private_dir, write_private
from engine.runtime.base import NODE_NAME, NodeConfig, RuntimeError_, config_from_dict, config_to_dict

__all__ = ["NODE_FILE", "Node", "Trash", "Watch", "load_node", "place_files", "read_pid", "remove_pid_file",
           "save_node", "save_record", "tail", "write_atomic"]

log = logging.getLogger(__name__)

NODE_FILE = "node.json"
TRASH = ".trash"  # removed node directories on their way out (never a node name: see NODE_NAME)
_FORMAT = 1


@dataclass
class Watch:
    """A thread waiting for one process of a node to exit (engine.runtime.process.exits)."""

    pid: int
    thread: threading.Thread
    done: threading.Event
    claimed: bool = False  # the exit was handled (by the watcher, or by kill()/stop() that saw it)


@dataclass
class Node:
    """One node as this runtime knows it: from its node.json, plus what the runtime learns while
    it runs (its child process if started here, its exit watch, its readiness report)."""

    name: str
    dir: Path
    config: NodeConfig
    binary: str
    marker: str
    proc: subprocess.Popen[bytes] | None = None
    watch: Watch | None = field(default=None)
    # Set when the node reported READY=1 or exited; `ready_told` once wait_ready said so.
    ready: threading.Event = field(default_factory=threading.Event)
    ready_told: bool = False
    reports: bool = False  # started by this runtime with a NOTIFY_SOCKET
    # TLS mode preferred: the node's own plain and TLS ports, behind the sniffing forwarder.
    backend: tuple[int, int] | None = None


def save_node(node_dir: Path, config: NodeConfig, binary: str, marker: str, files: Mapping[str, str],
              backend: tuple[int, int] | None = None) -> Node:
    """Write a node's files (config files from its launch, then node.json) and return its record."""
    private_dir(node_dir)
    for file_name, text in files.items():
        (node_dir / file_name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(node_dir / file_name, text)
    node = Node(config.name, node_dir, config, binary, marker, backend=backend)
    save_record(node)
    return node


def save_record(node: Node) -> None:
    """(Re)write the node's node.json from its record."""
    record = {"format": _FORMAT, "binary": node.binary, "marker": node.marker, "config": config_to_dict(node.config),
              "backend": list(node.backend) if node.backend else None}
    write_atomic(node.dir / NODE_FILE, json.dumps(record, indent=2))


def load_node(data_dir: Path, name: str) -> Node | None:
    """The node named `name` from its node.json, None if there is none (or it is unreadable)."""
    if not NODE_NAME.match(name):
        return None
    path = data_dir / name / NODE_FILE
    try:
        data = json.loads(path.read_text())
        backend = data.get("backend")
        return Node(
            name=name,
            dir=data_dir / name,
            config=config_from_dict(data["config"]),
            binary=str(data["binary"]),
            marker=str(data["marker"]),
            backend=(int(backend[0]), int(backend[1])) if backend else None,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring node %s: unreadable %s (%s)", name, path, exc)
        return None


def write_atomic(path: Path, text: str) -> None:
    # write_private's temporary name is ours alone: memcached writes its pid file through
    # "<pidfile>.tmp" too.
    write_private(path, text)


def place_files(node_dir: Path, files: Sequence[DataFile]) -> None:
    """Put a node's start data (engine.adapters.redis.start_data) into its directory. A source
    file is hard-linked where it can be (instant, whatever its size; the node never writes into
    its data files, it replaces them by rename, so the source stays as it is), else copied."""
    for item in files:
        dest = node_dir / item.path
        private_dir(dest.parent)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            if item.source is None:
                write_private(tmp, item.content)
            else:
                _link_or_copy(item.source, tmp)
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            if item.source is not None and not item.source.is_file():
                raise RuntimeError_(f"no seed file {item.source}", temporary=False) from exc
            raise RuntimeError_(f"cannot write {dest}: {exc.strerror or exc}") from exc
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RuntimeError_(f"cannot write {dest}: {exc.strerror or exc}") from exc


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP):
            raise
        copy_private(source, dest)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def remove_pid_file(path: Path, pid: int) -> None:
    """Remove the pid file if it still names `pid` (a new start may have written its own)."""
    if read_pid(path) == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def tail(path: Path, lines: int) -> str:
    """The last lines of a node's log (why it exited, typically)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class Trash:
    """Removed node directories: renamed out of the way at once (the name is free for a new
    node), deleted on a background thread (a large dump.rdb takes a while)."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir / TRASH
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if self._dir.is_dir():
            for leftover in self._dir.iterdir():  # a crash between rename and deletion
                self._delete_later(leftover)

    def remove(self, node_dir: Path) -> None:
        """Take `node_dir` away now and delete it in the background. Nothing on disk is fine."""
        try:
            moved = self._dir / f"{node_dir.name}.{uuid.uuid4().hex[:12]}"
            private_dir(self._dir)
            os.rename(node_dir, moved)
            self._delete_later(moved)
        except FileNotFoundError:
            pass  # nothing on disk (never started, or removed before)
        except OSError:
            shutil.rmtree(node_dir, ignore_errors=True)

    def close(self) -> None:
        """Wait for the deletions under way; then remove the trash directory when it is empty."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30.0)
        with contextlib.suppress(OSError):
            self._dir.rmdir()  # only when empty (another runtime may still be deleting)

    def _delete_later(self, path: Path) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._empty, name="node-dir-removal", daemon=True)
                self._thread.start()
        self._queue.put(path)

    def _empty(self) -> None:
        while (path := self._queue.get()) is not None:
            shutil.rmtree(path, ignore_errors=True)
