"""Moving hash slots between cluster nodes, for runtimes whose nodes answer over TCP (process and
docker): engine/slot_migration.py at each node's reach."""

from __future__ import annotations

from collections.abc import Sequence

from engine import slot_migration
from engine.access import Reach
from engine.runtime.base import NodeConfig, RuntimeError_


class TcpSlotCommands:
    """Mixin: needs `_config_of(name)` and `_reach(config)` of TcpNodeCommands."""

    def _config_of(self, name: str) -> NodeConfig | None:  # provided by the runtime
        raise NotImplementedError

    def _reach(self, config: NodeConfig) -> Reach:  # provided by TcpNodeCommands
        raise NotImplementedError

    def _reach_of(self, name: str) -> Reach:
        config = self._config_of(name)
        if config is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        return self._reach(config)

    def cluster_move_slots(self, source: str, target: str, slots: Sequence[int], masters: Sequence[str]) -> int:
        others = [self._reach_of(n) for n in masters if n not in (source, target)]
        try:
            return slot_migration.move_slots(self._reach_of(source), self._reach_of(target), others, slots)
        except slot_migration.MoveError as exc:
            raise RuntimeError_(f"moving slots from {source} to {target}: {exc}") from exc
