"""What every engine adapter offers: how to launch a node and how to probe it.

An adapter is pure knowledge about one engine family (redis/valkey, memcached): it renders
command lines and config files and speaks the wire protocol for health probes. It never starts
a process itself; runtimes (process, docker) do that with what `launch` returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Protocol

from engine.access import Reach
from engine.runtime.base import NodeConfig, ProbeResult

__all__ = ["CONFIG_FILE", "LOG_FILE", "PID_FILE", "EngineAdapter", "Launch", "ProbeResult", "SaslDb"]

# File names inside a node's directory, shared by adapters and runtimes.
CONFIG_FILE = "node.conf"
PID_FILE = "node.pid"
LOG_FILE = "node.log"


@dataclass(frozen=True)
class SaslDb:
    """A Cyrus SASL user database (memcached -S) the runtime creates at `path` (relative to the
    node directory) with saslpasswd2 before the node starts: it is a Berkeley DB file."""

    path: str
    users: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class Launch:
    """How to run one node: the argv, files to write into the node directory first (owner-only:
    they may hold passwords), and a `marker` string that appears in the running process's
    command line and identifies this very node (so a pid found in a pid file is only trusted
    when the command line matches). `notify`: the node sends systemd's READY=1 to
    $NOTIFY_SOCKET once it serves. `env`: variables the node needs besides the runtime's own.
    `sasl`: a SASL user database to create first."""

    argv: tuple[str, ...]
    marker: str
    files: Mapping[str, str] = field(default_factory=dict)
    notify: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    sasl: SaslDb | None = None


class EngineAdapter(Protocol):
    engines: tuple[str, ...]  # engine names this adapter serves, e.g. ("redis", "valkey")
    default_port: int

    def launch(self, config: NodeConfig, binary: str, node_dir: PurePath, *, run_as_root: bool = False,
               notify: bool = False, backend: tuple[int, int] | None = None) -> Launch:
        """Command line and files for `config`. `notify`: the runtime passes a NOTIFY_SOCKET, so
        the node may report readiness there (Launch.notify says whether it will). `backend`: the
        node's own plain and TLS ports behind the runtime's sniffing forwarder (TLS preferred).
        Raises ValueError for invalid settings (and for TLS on a binary built without it)."""
        ...

    def probe(self, reach: Reach, timeout: float) -> ProbeResult:
        """One health probe bounded by `timeout` seconds. Never raises."""
        ...

    def stats(self, reach: Reach, timeout: float) -> dict[str, str]:
        """The engine's own counters (redis/valkey: INFO; memcached: stats) as {field: value};
        raises OSError, ValueError or the engine's error reply when the node does not answer."""
        ...


def check_setting(key: str, value: str) -> None:
    """Settings end up in config files and argv: refuse what could inject extra lines/args."""
    if not key or any(c in key for c in "\r\n\0 \t"):
        raise ValueError(f"invalid setting name {key!r}: must be non-empty, without spaces or newlines")
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"invalid value for setting {key!r}: newlines and NUL are not allowed")
