"""The health monitor: Sentinel's model with one observer.

Every watched node is probed each `interval` (nodes watched as `slow`, standalone cache clusters
whose failure has no failover to drive, each `slow_interval`: the probes of dozens of idle
clusters five times a second would cost the API a tenth of a core); a node is *down* once its
probes have failed for `down_after` seconds (an answer of -LOADING is no failure: the node is alive, loading
its data, as Sentinel counts it). A node whose process or container exits is down at once (the runtime says
so; no timeout needed). When a node goes down, the key that owns it is handed to the control
loop. A TILT guard: if the monitor itself stalled (its loop ran late by more than `tilt_after`,
e.g. the laptop slept), no node is declared down until every node has been probed afresh.

Listeners (`listen`: the live feed) hear of each node's health changes: its first answer, down,
up again, and a new role (INFO's words, master or slave), from the monitor's thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from controlplane.state.records import ResourceKey
from engine import NodeRuntime, ProbeResult

log = logging.getLogger("elasticache_local.health")

PROBE_WORKERS = 8  # probes of one round run in this many threads (a frozen node holds up one)

# Told of a change: the node's runtime name, its owner, healthy, and its role (None: not known).
HealthListener = Callable[[str, ResourceKey, bool, "str | None"], None]


@dataclass
class NodeHealth:
    key: ResourceKey
    last_ok: float
    last: ProbeResult | None = None
    exited: bool = False
    reported: bool = False  # the owner was told this node is down
    fresh: bool = field(default=False)  # probed since the last TILT
    slow: bool = False  # probed every slow_interval
    due: float = 0.0  # monotonic time of its next probe
    failing_since: float | None = None  # when the first failed probe of the current streak was sent
    told: tuple[bool, str | None] | None = None  # (healthy, role) as listeners last heard it

    def change(self, healthy: bool, role: str | None) -> tuple[bool, str | None] | None:
        """The new (healthy, role) if listeners have not heard it yet (a node down keeps the role
        it was last seen with)."""
        if not healthy:
            role = self.told[1] if self.told is not None else None
        if self.told == (healthy, role):
            return None
        self.told = (healthy, role)
        return self.told

    def silent_since(self, interval: float) -> float:
        """Since when the node has not answered, as far as probes can tell: a slow node's last
        answer is up to a slow interval old, so one failed probe must not count as a second of
        silence; the streak starts one (fast) interval before its first failed probe."""
        if self.failing_since is None:
            return self.last_ok
        return max(self.last_ok, self.failing_since - interval)


class HealthMonitor:
    def __init__(
        self,
        runtime: NodeRuntime,
        on_down: Callable[[ResourceKey, str], None],
        *,
        interval: float = 0.2,
        down_after: float = 1.0,
        slow_interval: float | None = None,
        tilt_after: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._on_down = on_down
        self.interval = interval
        self.down_after = down_after
        self.slow_interval = max(interval, slow_interval if slow_interval is not None else interval)
        self._tilt_after = tilt_after
        self._now = monotonic
        self._nodes: dict[str, NodeHealth] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._listeners: list[HealthListener] = []
        self.tilt = False

    def listen(self, listener: HealthListener) -> None:
        self._listeners.append(listener)

    def _tell(self, changes: list[tuple[str, ResourceKey, bool, str | None]]) -> None:
        for name, key, healthy, role in changes:
            for listener in self._listeners:
                try:
                    listener(name, key, healthy, role)
                except Exception:  # the feed's trouble is never the monitor's
                    log.exception("health listener failed on %s", name)

    # ---- what is watched ----------------------------------------------------------------

    def watch(self, name: str, key: ResourceKey, *, slow: bool = False) -> None:
        """Start watching a node (idempotent). A newly watched node counts as healthy now."""
        with self._lock:
            current = self._nodes.get(name)
            if current is None:
                self._nodes[name] = NodeHealth(key=key, last_ok=self._now(), slow=slow)
            else:
                current.key = key  # a new owner (a member kept as a standalone cluster)
                if current.slow != slow:
                    current.slow, current.due = slow, 0.0

    def unwatch(self, name: str) -> None:
        with self._lock:
            self._nodes.pop(name, None)

    def revive(self, name: str) -> None:
        """The owner (re)started the node: forget the old failure."""
        with self._lock:
            node = self._nodes.get(name)
            if node is not None:
                node.last_ok = self._now()
                node.failing_since = None
                node.exited = False
                node.reported = False

    def exited(self, name: str) -> bool:
        """The runtime reports the node's exit: down at once. True if the node is watched."""
        with self._lock:
            node = self._nodes.get(name)
            if node is None:
                return False
            node.exited = True
            node.reported = True
            key = node.key
            told = node.change(False, None)
        if told is not None:
            self._tell([(name, key, *told)])
        self._on_down(key, name)
        return True

    def is_down(self, name: str) -> bool:
        """Exited, or its latest probe failed and it has not answered for `down_after`. Time
        alone proves nothing: if probe rounds are late (a busy machine, many frozen nodes), a
        node nobody asked is not a node that failed to answer."""
        with self._lock:
            node = self._nodes.get(name)
            if node is None:
                return False
            if node.exited:
                return True
            failed = node.last is not None and not node.last.ok
            return failed and not self.tilt and self._now() - node.silent_since(self.interval) >= self.down_after

    def last_probe(self, name: str) -> ProbeResult | None:
        with self._lock:
            node = self._nodes.get(name)
            return node.last if node else None

    # ---- the loop -----------------------------------------------------------------------

    def probe_all(self) -> None:
        """One round: probe every watched node, then report the ones that went down."""
        sent = self._now()
        # A slow node is due a little early rather than a whole round late.
        slack = self.interval / 2
        with self._lock:
            names = [n for n, h in self._nodes.items() if h.due <= sent + slack]
            for name in names:
                watched = self._nodes[name]
                watched.due = sent + (self.slow_interval if watched.slow else 0.0)
        timeout = max(0.05, min(0.25, self.down_after / 4))
        # A node that answers was alive when the probe was sent: stamping the answer's arrival
        # instead would delay detection by a slow round's length.
        if self._pool is not None and len(names) > 1:
            # One task per worker, each probing its share in turn, not one task per node: with
            # kept connections a probe costs less than handing it to a thread. A frozen node
            # holds up its share of the round by one timeout, as it held up the round before.
            shares = [names[i::PROBE_WORKERS] for i in range(min(PROBE_WORKERS, len(names)))]
            results = [r for share in self._pool.map(lambda ns: [(n, self._runtime.probe(n, timeout)) for n in ns],
                                                     shares) for r in share]
        else:
            results = [(n, self._runtime.probe(n, timeout)) for n in names]
        now = self._now()
        down: list[tuple[ResourceKey, str]] = []
        changes: list[tuple[str, ResourceKey, bool, str | None]] = []
        with self._lock:
            for name, result in results:
                node = self._nodes.get(name)
                if node is None:
                    continue
                node.last = result
                node.fresh = True
                if result.ok or _loading(result):
                    node.last_ok = max(node.last_ok, sent)
                    node.failing_since = None
                    node.exited = False
                    node.reported = False
                    told = node.change(True, result.role)
                    if told is not None:
                        changes.append((name, node.key, *told))
                    continue
                if node.failing_since is None:
                    node.failing_since = sent
                node.due = 0.0  # a failing node is probed every round until it answers or is down
                if not self.tilt and not node.reported and now - node.silent_since(self.interval) >= self.down_after:
                    node.reported = True
                    down.append((node.key, name))
                    told = node.change(False, None)
                    if told is not None:
                        changes.append((name, node.key, *told))
            if self.tilt and all(n.fresh for n in self._nodes.values()):
                log.warning("TILT over: every node has been observed afresh")
                self.tilt = False
        self._tell(changes)
        for key, name in down:
            log.warning("node %s is down (no answer for %.1fs)", name, self.down_after)
            self._on_down(key, name)

    def enter_tilt(self) -> None:
        with self._lock:
            self.tilt = True
            now = self._now()
            for node in self._nodes.values():
                node.fresh = False
                node.last_ok = max(node.last_ok, now)  # stale observations say nothing
                node.failing_since = None

    def _run(self) -> None:
        last = self._now()
        wait = self.interval
        while not self._stop.wait(wait):
            now = self._now()
            if now - last > wait + self._tilt_after:
                log.warning("health monitor stalled for %.1fs: TILT, no failover until nodes are seen again",
                            now - last)
                self.enter_tilt()
            try:
                self.probe_all()
            except Exception:
                log.exception("health round failed")
            last = self._now()
            # Rounds start every `interval`: a slow round (frozen nodes time out) eats into the wait.
            wait = max(0.0, self.interval - (last - now))

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=PROBE_WORKERS, thread_name_prefix="probe")
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _loading(result: ProbeResult) -> bool:
    """A node that answers -LOADING is alive, busy loading its dataset (a restore, an AOF, a
    replica's full sync): not down, as for Sentinel, for which -LOADING is a valid reply to PING.
    It is not ready either (its probe is not ok): only the health monitor lets it be."""
    return (result.error or "").startswith("LOADING")
