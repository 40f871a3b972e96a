"""Service updates, the control loop's side: publishing them, and following each update action.

Publishing: after every pass over a cache, its nodes' versions are compared with what the
runtime can run; a newer patch of their line is published as a service update (once per
account and region) with an update action for that cache. The caches' own reconcilers carry an
applied update out (state.service_updates.pick_version / outdated: replicas first, the primary
after a switchover); this reconciler only observes the nodes' reported versions and writes the
action's status, its per-node progress and events, and applies an update the user left alone
past its recommended apply-by date in the cache's maintenance window."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from controlplane.catalog import version_key
from controlplane.clock import Clock
from controlplane.reconciler.controller import KindReconciler
from controlplane.reconciler.errors import Requeue
from controlplane.reconciler.schedule import in_weekly_window
from controlplane.state.events import EventLog
from controlplane.state.members import members_of
from controlplane.state.records import CacheCluster, NodeStatus, ReplicationGroup, ResourceKey
from controlplane.state.service_updates import (
    AVAILABLE_FOR,
    RECOMMENDED_APPLY_WITHIN,
    NodeProgress,
    ServiceUpdate,
    ServiceUpdateStatus,
    Target,
    UpdateAction,
    action_id,
    actions_for,
    line_of,
    newer_patch,
    update_name,
)
from controlplane.state.store import Store

FOLLOW = 1.0  # seconds between looks at an action being carried out
WAIT_FOR_WINDOW = 60.0  # seconds between looks at an action waiting for its maintenance window
ENGINE_NAMES = {"redis": "Redis OSS", "valkey": "Valkey", "memcached": "Memcached"}

Cache = CacheCluster | ReplicationGroup


class ServiceUpdates:
    """The update-action reconciler, and the publisher the caches' passes call."""

    kind = UpdateAction.KIND

    def __init__(self, store: Store, events: EventLog, clock: Clock,
                 available: Callable[[], Mapping[str, Sequence[str]]],
                 enqueue: Callable[[ResourceKey], None]) -> None:
        self._store = store
        self._events = events
        self._clock = clock
        self._available = available
        self._enqueue = enqueue

    # ---- publishing ---------------------------------------------------------------------

    def observe(self, key: ResourceKey) -> None:
        """After a pass over a cache: publish what a newer installed patch makes available to
        it, and let its actions look at what the pass did."""
        cache = self._cache(key)
        if cache is None:
            for action in self._store.records(UpdateAction, key.account, key.region):
                if action.target_id == key.id:
                    self._enqueue(action.key)  # the cache is gone: so is its action
            return
        member = isinstance(cache, CacheCluster) and cache.spec.replication_group_id is not None
        if not member and not cache.deleting() and cache.status.announced_available:
            self._publish(cache)
        for action in actions_for(self._store, cache):
            self._enqueue(action.key)

    def _cache(self, key: ResourceKey) -> Cache | None:
        if key.kind == CacheCluster.KIND:
            return self._store.get(key, CacheCluster)
        if key.kind == ReplicationGroup.KIND:
            return self._store.get(key, ReplicationGroup)
        return None

    def _publish(self, cache: Cache) -> None:
        engine = cache.spec.engine
        installed = self._available().get(engine, ())
        for running in sorted({n.version for _, n in nodes_of(self._store, cache) if n.version}):
            newer = [v for v in installed if newer_patch(v, running)]
            if not newer:
                continue
            version = max(newer, key=version_key)
            name = update_name(engine, version)
            if self._store.get(ResourceKey(ServiceUpdate.KIND, cache.account, cache.region, name),
                               ServiceUpdate) is None:
                now = self._clock.now()
                self._store.create(ServiceUpdate(
                    account=cache.account, region=cache.region, id=name, created_at=now,
                    status=ServiceUpdateStatus(
                        engine=engine, engine_version=version, released_at=now,
                        recommended_apply_by=now + RECOMMENDED_APPLY_WITHIN, ends_at=now + AVAILABLE_FOR,
                        description=f"{ENGINE_NAMES.get(engine, engine)} {version}: the latest patch release of "
                                    f"{ENGINE_NAMES.get(engine, engine)} {line_of(version)} that this machine can "
                                    "run. Nodes restart one at a time on the new version (replicas first).")))
            target: Target = "group" if isinstance(cache, ReplicationGroup) else "cluster"
            action = UpdateAction(account=cache.account, region=cache.region, id=action_id(name, target, cache.id),
                                  created_at=self._clock.now(), update=name, target=target, target_id=cache.id)
            if self._store.create(action):
                for label, _ in nodes_of(self._store, cache):  # AWS's ServiceUpdateAvailableForNode, per node
                    member, node_id = label.split("/")
                    self._events.emit(cache.account, cache.region, "cache-cluster", member,
                                      f"Service update is available for cache node {node_id}.")

    # ---- the update-action reconciler ---------------------------------------------------

    def startup(self) -> None: ...

    def fail(self, key: ResourceKey, message: str) -> None: ...

    def reconcile(self, key: ResourceKey) -> None:
        action = self._store.get(key, UpdateAction)
        if action is None:
            return
        update = self._store.get(ResourceKey(ServiceUpdate.KIND, key.account, key.region, action.update),
                                 ServiceUpdate)
        cache = self._cache(ResourceKey(CacheCluster.KIND if action.target == "cluster" else ReplicationGroup.KIND,
                                        key.account, key.region, action.target_id))
        if update is None or cache is None or cache.deleting():
            self._store.delete(key)
            return
        now = self._clock.now()
        action = self._auto_apply(action, update, cache, now)
        action = self._observe(action, update, cache, now)
        state = action.api_status()
        if action.active():
            self._enqueue(cache.key)  # the cache's reconciler moves one node per pass: the next one
        if state in ("waiting-to-start", "in-progress", "stopping"):
            raise Requeue(f"update action {state}", delay=FOLLOW)
        if state in ("not-applied", "scheduled") and update.status.auto_update:
            until = (update.status.recommended_apply_by - now).total_seconds()
            raise Requeue("waiting for the recommended apply-by date and the maintenance window",
                          delay=WAIT_FOR_WINDOW if until <= 0 else min(until, 3600.0))

    def _auto_apply(self, action: UpdateAction, update: ServiceUpdate, cache: Cache, now: datetime) -> UpdateAction:
        """An update nobody applied (nor stopped) past its recommended apply-by date is applied
        by the service in the cache's next maintenance window, as AWS does."""
        if (action.requested_seq() > 0 or action.spec.stop_seq > 0 or action.status.state in ("complete",
                                                                                               "not-applicable")
                or not update.status.auto_update or now < update.status.recommended_apply_by
                or cache.api_status() != "available"
                or not in_weekly_window(cache.spec.maintenance_window, now)):
            return action

        def apply(a: UpdateAction) -> None:
            a.status.auto_seq = a.spec.stop_seq + 1
            a.status.auto_applied_at = now

        updated = self._store.update(action.key, UpdateAction, apply)
        if updated is None:
            return action
        self._emit(cache, f"Applying service update {action.update} in the maintenance window: its recommended "
                          f"apply-by date {update.status.recommended_apply_by:%Y-%m-%d} has passed")
        self._enqueue(cache.key)
        return updated

    def _observe(self, action: UpdateAction, update: ServiceUpdate, cache: Cache, now: datetime) -> UpdateAction:
        """The action's and each node's status, from the versions the nodes report."""
        version = update.status.engine_version
        nodes = nodes_of(self._store, cache)
        done = {label for label, n in nodes if _runs(n, version)}
        busy = {label for label, n in nodes if n.status != "available"}
        active, stopped = action.active(), action.stopped()
        if nodes and len(done) == len(nodes):
            state = "complete"
        elif action.status.state == "complete":
            state = "complete"  # a node added afterwards does not undo it
        elif nodes and not any(line_of(n.version or "") == line_of(version) for _, n in nodes):
            state = "not-applicable"  # the cache moved to another engine version meanwhile
        elif active:
            state = "in-progress" if done or busy or action.status.state == "in-progress" else "waiting-to-start"
        elif stopped:
            state = "stopping" if busy and action.status.state in ("in-progress", "stopping") else "stopped"
        elif update.status.auto_update and now >= update.status.recommended_apply_by:
            state = "scheduled"  # the service applies it in the next maintenance window
        else:
            state = "not-applied"
        progress: dict[str, NodeProgress] = {}
        for label, _ in nodes:
            old = action.status.nodes.get(label)
            if label in done:
                node_state = "complete"
            elif active:
                node_state = "in-progress" if label in busy else "waiting-to-start"
            elif stopped:
                node_state = "stopping" if label in busy and old is not None and old.status == "in-progress" \
                    else "stopped"
            else:
                node_state = "not-applied"
            if old is not None and old.status == node_state:
                progress[label] = old
                continue
            started = old.started_at if old is not None else None
            if node_state == "in-progress" or (node_state == "complete" and started is None and active):
                started = started or now
            progress[label] = NodeProgress(status=node_state, modified_at=now, started_at=started,
                                           ended_at=now if node_state == "complete" else None)
        before = action.status
        if (before.state, before.nodes, before.nodes_total, before.nodes_updated) == (
                state, progress, len(nodes), len(done)):
            return action

        def write(a: UpdateAction) -> None:
            if a.status.state != state:
                a.status.modified_at = now
            a.status.state = state
            a.status.nodes = progress
            a.status.nodes_total, a.status.nodes_updated = len(nodes), len(done)
            if state == "complete" and a.status.completed_at is None:
                a.status.completed_at = now

        written = self._store.update(action.key, UpdateAction, write)
        self._announce(cache, action, written or action, version, before.state, state, progress)
        return written or action

    def _announce(self, cache: Cache, old: UpdateAction, new: UpdateAction, version: str, was: str | None,
                  state: str, progress: dict[str, NodeProgress]) -> None:
        name = new.update
        engine = ENGINE_NAMES.get(cache.spec.engine, cache.spec.engine)
        if state == "in-progress" and was != "in-progress":
            self._emit(cache, f"Service update {name} started: moving the nodes to {engine} {version}")
        for label, node in sorted(progress.items()):
            prior = old.status.nodes.get(label)
            if node.status == "complete" and prior is not None and prior.status != "complete":
                member, node_id = label.split("/")
                self._events.emit(cache.account, cache.region, "cache-cluster", member,
                                  f"Service update {name} applied on cache node {node_id}")
        if state == "complete" and was != "complete":
            self._emit(cache, f"Service update {name} completed: every node runs {engine} {version}")
        elif state == "stopped" and was != "stopped":
            self._emit(cache, f"Service update {name} stopped: {new.status.nodes_updated} of "
                              f"{new.status.nodes_total} nodes updated")

    def _emit(self, cache: Cache, message: str) -> None:
        source = "replication-group" if isinstance(cache, ReplicationGroup) else "cache-cluster"
        self._events.emit(cache.account, cache.region, source, cache.id, message)


def nodes_of(store: Store, cache: Cache) -> list[tuple[str, NodeStatus]]:
    """A cache's nodes, each labelled "<cache cluster id>/<node id>"."""
    if isinstance(cache, ReplicationGroup):
        return [(f"{m.id}/{n.node_id}", n) for m in members_of(store, cache) for n in m.status.nodes]
    return [(f"{cache.id}/{n.node_id}", n) for n in cache.status.nodes]


def _runs(node: NodeStatus, version: str) -> bool:
    """The node reports running the update's version (or a later patch of its line)."""
    return (node.status == "available" and node.version is not None
            and line_of(node.version) == line_of(version) and version_key(node.version) >= version_key(version))


class WithServiceUpdates:
    """A cache kind's reconciler, followed after each pass by the service-update publisher."""

    def __init__(self, inner: KindReconciler, updates: ServiceUpdates) -> None:
        self.kind = inner.kind
        self._inner = inner
        self._updates = updates

    def startup(self) -> None:
        self._inner.startup()

    def fail(self, key: ResourceKey, message: str) -> None:
        self._inner.fail(key, message)

    def reconcile(self, key: ResourceKey) -> None:
        try:
            self._inner.reconcile(key)
        finally:
            # Also after a pass that requeues: a rolling update moves a node per pass.
            self._updates.observe(key)

