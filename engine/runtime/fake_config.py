"""Live configuration changes for the fake runtime: what CONFIG SET does to a real node's settings
(a parameter group's immediate values) and to its replication link (TLS turned on or off)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from engine.runtime.base import NodeConfig, RuntimeError_, check_live_settings


class _Node(Protocol):
    config: NodeConfig


class FakeConfigCommands:
    """Mixin of FakeRuntime: needs its `_lock`, `calls` and `_command_target`."""

    _lock: threading.RLock
    calls: list[tuple[str, str]]

    def _command_target(self, name: str) -> _Node:
        raise NotImplementedError

    def apply_config(self, name: str, settings: Mapping[str, str]) -> None:
        """As a real node would: redis/valkey only, running; kept in its config (config_of)."""
        with self._lock:
            self.calls.append(("apply_config", name))
            node = self._command_target(name)
            if node.config.engine == "memcached":
                raise RuntimeError_(f"node {name} runs memcached, whose options are set at start", temporary=False)
            check_live_settings(name, settings)
            node.config = replace(node.config, settings={**node.config.settings, **settings})

    def set_tls_replication(self, name: str, on: bool) -> None:
        with self._lock:
            self.calls.append(("set_tls_replication", name))
            node = self._command_target(name)
            security = node.config.security
            if security is None or security.tls is None:
                raise RuntimeError_(f"node {name} was started without TLS", temporary=False)
            node.config = replace(node.config, security=replace(security, tls=replace(security.tls, replication=on)))
