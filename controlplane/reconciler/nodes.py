"""Starting, judging and awaiting nodes: what the cache-cluster and replication-group
reconcilers do alike to the nodes they own.

A reconcile never parks its worker for long. A node that was just started is given a short,
bounded wait (READY_WAIT of real time) for its own readiness report, which ends the wait the
moment it comes (redis/valkey report READY=1 to the process runtime a few milliseconds after
start; a replica once its first sync is done, measured 9 ms with repl-diskless-sync-delay 0);
where no report can come (memcached, docker) the runtime pauses a few milliseconds between
probes. A node still not answering after that is not waited for: the pass ends with a Requeue
of POLL seconds on the injected clock, and the next pass probes again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from controlplane.reconciler.errors import PermanentError, TemporaryError
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import Infra
from controlplane.state.records import ResourceKey
from engine import NodeConfig, NodeState, RuntimeError_

READY_WAIT = 0.1  # seconds (real time) a pass may wait for the nodes it is starting
POLL = 0.05  # seconds (injected clock) until the next pass probes a node still starting
PROBE_TIMEOUT = 0.25


class Nodes:
    def __init__(self, infra: Infra, health: HealthMonitor) -> None:
        self._infra = infra
        self._health = health

    def own(self, name: str, key: ResourceKey, *, slow: bool) -> None:
        """The node's exits and health go to `key`'s reconcile."""
        self._infra.node_owner[name] = key
        self._health.watch(name, key, slow=slow)

    def discard(self, name: str) -> None:
        """A node whose data is going away: no graceful stop, just gone. Disowned first, so its
        exit is nobody's news (no second reconcile of the key being deleted)."""
        self._health.unwatch(name)
        self._infra.node_owner.pop(name, None)
        self._infra.runtime.kill(name)
        self._infra.runtime.remove(name)

    def running(self, name: str, available: bool) -> bool:
        """Whether the node runs. One that was available but is down (frozen or hung) is made
        surely dead first, so the caller starts it again."""
        runtime = self._infra.runtime
        info = runtime.inspect(name)
        alive = info is not None and info.state != NodeState.EXITED
        if alive and available and self._health.is_down(name):
            runtime.kill(name)
            return False
        return alive

    def version_of(self, name: str) -> str | None:
        info = self._infra.runtime.inspect(name)
        return info.version if info is not None else None

    def start(self, config: NodeConfig, what: str, temporary_delay: float) -> None:
        try:
            self._infra.runtime.start(config)
        except RuntimeError_ as exc:
            if exc.temporary:
                raise TemporaryError(f"{what}: {exc}", delay=temporary_delay) from exc
            raise PermanentError(f"{what}: {exc}") from exc
        self._health.revive(config.name)

    def await_ready(self, names: Sequence[str], ready: Callable[[str], bool]) -> list[str]:
        """Check each node with `ready` (which probes) until all are ready or READY_WAIT has
        passed, waiting between rounds for the first one's readiness report; the names still not
        ready are returned (the caller requeues)."""
        waiting = list(names)
        deadline = time.monotonic() + READY_WAIT
        while waiting:
            waiting = [n for n in waiting if not ready(n)]
            left = deadline - time.monotonic()
            if not waiting or left <= 0:
                break
            # Returns when the node reports that it serves (no polling), or after the runtime's
            # short pause where no report comes: the next probe decides either way.
            self._infra.runtime.wait_ready(waiting[0], left)
        return waiting
