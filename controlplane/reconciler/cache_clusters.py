"""Reconcile a cache cluster: its nodes exist, run the right version, answer, and its status
and events say so. Every step is safe to repeat; status is written after each real change."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial

from controlplane.clock import Clock
from controlplane.reconciler import parameters, texts
from controlplane.reconciler.backups import Backups
from controlplane.reconciler.errors import Requeue, TemporaryError
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import (
    Infra,
    build_node_config,
    endpoint_name,
    node_name,
)
from controlplane.reconciler.nodes import POLL, PROBE_TIMEOUT, Nodes
from controlplane.reconciler.restores import ClusterRestore, Restores, final_snapshot_failure
from controlplane.reconciler.sasl import SaslSync
from controlplane.reconciler.schedule import in_weekly_window
from controlplane.reconciler.security import tls_of
from controlplane.reconciler.versions import choose_version, default_azs
from controlplane.state.acl import desired_security, node_acl
from controlplane.state.events import EventLog
from controlplane.state.records import (
    CacheCluster,
    CacheClusterStatus,
    NodeStatus,
    ResourceKey,
)
from controlplane.state.security import AppliedSecurity
from controlplane.state.service_updates import outdated
from controlplane.state.store import Store
from engine import Member, NodeConfig

log = logging.getLogger("elasticache_local.reconciler")

SOURCE = "cache-cluster"


class CacheClusterReconciler:
    kind = CacheCluster.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog, clock: Clock,
                 enqueue: Callable[[ResourceKey], None], health: HealthMonitor, *, restores: Restores,
                 backups: Backups) -> None:
        self._restore = ClusterRestore(store, events, restores, self._discard_all)
        self._backups = backups
        self._store = store
        self._enqueue = enqueue
        self._health = health
        self._infra = infra
        self._events = events
        self._clock = clock
        self._nodes = Nodes(infra, health)
        self._sasl = SaslSync(infra, self._emit)
        # Configuration endpoints served by this process's hub: the hub starts empty with the
        # process, and so does this; the first pass adds each endpoint again.
        self._endpoints: set[str] = set()

    # ---- entry points -----------------------------------------------------------------

    def startup(self) -> None:
        for rec in self._store.records(CacheCluster):
            if rec.spec.replication_group_id:
                continue
            for node in rec.status.nodes:
                self._own(rec, node.node_id)

    def reconcile(self, key: ResourceKey) -> None:
        rec = self._store.get(key, CacheCluster)
        if rec is None:
            return
        if rec.spec.replication_group_id:
            # A member of a replication group: the group's reconciler runs its node.
            self._enqueue(ResourceKey("replication-group", rec.account, rec.region, rec.spec.replication_group_id))
            return
        if rec.deleting():
            self._delete(rec)
            return
        if rec.status.phase == "restore-failed":
            return  # nothing runs; only a delete helps
        rec = self._apply_pending(rec)
        version, exact, updating = choose_version(self._store, self._infra, rec)
        rec = self._plan_nodes(rec, version, exact)
        rec = self._record_version(rec, version, exact)
        rec = self._remove_nodes(rec)
        rec = self._run_nodes(rec, version, updating)
        rec = self._reboot(rec, version)
        self._sasl.converge(rec, [self._name(rec, n.node_id) for n in rec.status.nodes if n.status == "available"])
        if rec.status.phase == "available":
            rec = parameters.sync(self._store, self._infra, rec)
        self._config_endpoint(rec)
        self._settle(rec)
        current = self._store.get(rec.key, CacheCluster)
        if current is not None and current.status.phase == "available":
            self._backups.tick(current)

    def fail(self, key: ResourceKey, message: str) -> None:
        rec = self._store.get(key, CacheCluster)
        if rec is None:
            return

        if rec.status.failure == message:
            return  # already reported; the resync retries quietly

        def change(r: CacheCluster) -> None:
            # A running cluster keeps its status, and a failed restore says so.
            if not r.status.announced_available and r.status.phase != "restore-failed":
                r.status.phase = "incompatible-network"
            r.status.failure = message

        self._store.update(key, CacheCluster, change)
        verb = "create" if not rec.status.announced_available else "repair"
        self._emit(rec, f"Failed to {verb} cache cluster: {message}")

    # ---- steps --------------------------------------------------------------------------

    def _apply_pending(self, rec: CacheCluster) -> CacheCluster:
        """Modifications asked with ApplyImmediately=false take effect in the maintenance window.
        They stay in spec (the handlers'); status records that they were applied, and every step
        after this one acts on rec.target(), the spec with them applied."""
        if rec.unapplied().empty() or rec.api_status() != "available":
            return rec
        if not in_weekly_window(rec.spec.maintenance_window, self._clock.now()):
            return rec
        pending = rec.spec.pending.model_copy(deep=True)

        def apply(s: CacheClusterStatus) -> None:
            s.pending_applied = pending
            s.phase = "modifying"  # until _settle sees the nodes match

        rec = self._write_status(rec, apply)
        self._emit(rec, "Applying pending modifications in the maintenance window")
        return rec

    def _record_version(self, rec: CacheCluster, version: str, exact: bool) -> CacheCluster:
        """Record a newly chosen version (saying so when it is not the one asked for)."""
        if rec.status.engine_version == version:
            return rec
        rec = self._write_status(rec, lambda s: setattr(s, "engine_version", version))
        self._announce_version(rec, version, exact)
        return rec

    def _announce_version(self, rec: CacheCluster, version: str, exact: bool) -> None:
        self._emit(rec, texts.runs_as(rec.spec.engine, rec.target().engine_version, version, exact))

    def _plan_nodes(self, rec: CacheCluster, version: str, exact: bool) -> CacheCluster:
        """Add a node slot (id, AZ, address) for every node the spec asks for beyond those we have.
        A newly chosen version is recorded in the same write (one write less before a start)."""
        target = rec.target()
        live = [n for n in rec.status.nodes if n.node_id not in target.node_ids_to_remove]
        missing = target.num_nodes - len(live)
        if missing <= 0:
            return rec
        azs = default_azs(rec)
        with self._infra.alloc_lock:
            new_nodes: list[NodeStatus] = []
            number = max((int(n.node_id) for n in rec.status.nodes), default=rec.status.last_node_number)
            number = max(number, rec.status.last_node_number)
            for _ in range(missing):
                number += 1
                node_id = f"{number:04d}"
                host, port = self._infra.allocate(self._infra.node_addresses, rec.spec.port, self._store)
                az = azs[(number - 1) % len(azs)]
                new_nodes.append(NodeStatus(node_id=node_id, status="creating", az=az, host=host,
                                            port=port, created_at=self._clock.now()))
            growing = rec.status.announced_available
            new_version = rec.status.engine_version != version

            def change(s: CacheClusterStatus) -> None:
                if growing and s.modifying_from is None:
                    s.modifying_from = len([n for n in s.nodes if n.status != "deleting"])
                s.nodes.extend(new_nodes)
                s.last_node_number = number
                s.engine_version = version
                if s.phase is None:
                    s.phase = "creating"

            rec = self._write_status(rec, change)
        if new_version:
            self._announce_version(rec, version, exact)
        if growing:
            self._emit(rec, "Increasing number of requested nodes")
        for node in new_nodes:
            self._own(rec, node.node_id)
            self._emit(rec, f"Added cache node {node.node_id} in availability zone {node.az}")
        return rec

    def _remove_nodes(self, rec: CacheCluster) -> CacheCluster:
        doomed = [n for n in rec.status.nodes if n.node_id in rec.target().node_ids_to_remove]
        if not doomed:
            return rec
        if rec.status.modifying_from is None:
            before = len(rec.status.nodes)
            rec = self._write_status(rec, lambda s: setattr(s, "modifying_from", before))
        for node in doomed:
            self._nodes.discard(self._name(rec, node.node_id))
        self._sasl.forget([self._name(rec, n.node_id) for n in doomed])
        ids = {n.node_id for n in doomed}
        rec = self._write_status(rec, lambda s: setattr(s, "nodes", [n for n in s.nodes if n.node_id not in ids]))
        self._emit(rec, f"Removed cache nodes {', '.join(sorted(ids))}")
        return rec

    def _run_nodes(self, rec: CacheCluster, version: str, updating: bool = False) -> CacheCluster:
        """Start every node that is not running; wait (briefly) for the ones starting to answer."""
        runtime = self._infra.runtime
        node_type = rec.target().node_type
        starting: list[str] = []
        blocked: list[str] = []
        for node in rec.status.nodes:
            name = self._name(rec, node.node_id)
            running = self._nodes.running(name, node.status == "available")
            current = node.node_type == node_type and not outdated(self._nodes.version_of(name) or "", version,
                                                                   updating) and not (
                # Parameters waiting for a restart get it in the maintenance window.
                node.parameter_status == "pending-reboot" and in_weekly_window(rec.spec.maintenance_window,
                                                                               self._clock.now()))
            if running and current:
                if node.status != "available":
                    starting.append(node.node_id)
                continue
            if running and updating and starting:
                continue  # an update restarts one node per pass (its action's reconciler requeues us)
            if running:  # another version or node type was asked for: a planned replacement, not a recovery
                self._emit(rec, texts.shutdown(node.node_id))
                rec = self._set_node(rec, node.node_id, "rebooting", planned=texts.reason(
                    node.node_type != node_type, node.version is not None and node.version != version))
                runtime.stop(name)
            elif self._infra.az_down(node.az, self._clock.monotonic()):
                # Seen down and its zone is interrupted: it comes back afterwards. Until then it
                # reads as a node being recovered, as on AWS, not as the available node it was.
                if node.status == "available":
                    self._emit(rec, f"Recovering cache nodes {node.node_id}")
                    rec = self._set_node(rec, node.node_id, "rebooting")
                blocked.append(node.node_id)
                continue
            self._restore.check_not_crashed(rec)
            if node.status == "available" and not running:
                self._emit(rec, f"Recovering cache nodes {node.node_id}")
                rec = self._set_node(rec, node.node_id, "rebooting")
            params = parameters.wanted(self._store, rec)
            config = self._config(rec, node, version, params)
            seeding = self._restore.pending(rec)
            if seeding:
                config = self._restore.seeded(rec, config)
            self._nodes.start(config, f"node {node.node_id}", temporary_delay=0.5)
            if seeding:  # only a node really started with the file can have failed to load it
                rec = self._restore.started(rec)
            rec = self._write_status(rec, partial(_set_type, node_id=node.node_id, node_type=node_type,
                                                  tls=tls_of(node_acl(self._store, rec)), params=params))
            starting.append(node.node_id)
        if starting:
            rec = self._await_ready(rec, starting)
        if blocked:
            raise TemporaryError(f"nodes {', '.join(blocked)} wait for their availability zone", delay=1.0)
        return rec

    def _await_ready(self, rec: CacheCluster, node_ids: Iterable[str]) -> CacheCluster:
        """The starting nodes answer, or the pass ends with a requeue (see reconciler.nodes)."""
        by_name = {self._name(rec, node_id): node_id for node_id in node_ids}
        current = [rec]

        def ready(name: str) -> bool:
            result = self._infra.runtime.probe(name, PROBE_TIMEOUT)
            if not result.ok:
                return False
            node_id = by_name[name]
            r = current[0]
            node = r.node(node_id)
            was, planned = (node.status, node.planned) if node else ("creating", None)
            r = self._set_node(r, node_id, "available", version=result.version)
            if self._restore.pending(r):
                r = self._restore.loaded(r)
            if planned is not None:
                self._replaced(r, node_id, planned)
            elif was == "rebooting" and r.status.rebooted_seq >= (r.spec.reboot.seq if r.spec.reboot else 0):
                self._emit(r, f"Finished recovery for cache nodes {node_id}")
            current[0] = r
            return True

        waiting = self._nodes.await_ready(list(by_name), ready)
        if waiting:
            raise Requeue(f"nodes {', '.join(by_name[n] for n in waiting)} do not answer yet", delay=POLL)
        return current[0]

    def _replaced(self, rec: CacheCluster, node_id: str, planned: str) -> None:
        """A node restarted on purpose answers: AWS's texts, the cluster's once its last node is done."""
        self._emit(rec, texts.restarted(node_id))
        nodes = rec.status.nodes
        if any(n.planned for n in nodes):
            return
        if planned == texts.PATCH and len({n.version for n in nodes}) == 1:
            self._emit(rec, texts.PATCHED)
        elif planned == texts.SCALE:
            self._emit(rec, texts.scaled(rec.target().node_type))

    def _reboot(self, rec: CacheCluster, version: str) -> CacheCluster:
        request = rec.spec.reboot
        if request is None or request.seq <= rec.status.rebooted_seq:
            return rec
        if rec.status.reboot_started >= request.seq:  # restarted by an earlier pass: await them
            return self._finish_reboot(rec, request.seq, request.node_ids)
        runtime = self._infra.runtime

        def rebooting(s: CacheClusterStatus) -> None:
            s.phase = "rebooting cache cluster nodes"
            for n in s.nodes:
                if n.node_id in request.node_ids:
                    n.status = "rebooting"

        rec = self._write_status(rec, rebooting)
        for node_id in request.node_ids:
            node = rec.node(node_id)
            if node is None:
                continue
            name = self._name(rec, node_id)
            if rec.spec.engine == "memcached":
                # A memcached reboot flushes the data (as in AWS), and memcached takes a second
                # to notice SIGTERM: kill it.
                runtime.kill(name)
            else:
                runtime.stop(name)  # as on AWS, the node comes back empty (with AOF: with its data)
            self._emit(rec, f"Cache node {node_id} shutdown")
            params = parameters.wanted(self._store, rec)
            runtime.start(self._config(rec, node, version, params))
            self._health.revive(name)
            rec = self._write_status(rec, partial(_set_params, node_id=node_id, params=params))
        rec = self._write_status(rec, lambda s: setattr(s, "reboot_started", request.seq))
        return self._finish_reboot(rec, request.seq, request.node_ids)

    def _finish_reboot(self, rec: CacheCluster, seq: int, node_ids: list[str]) -> CacheCluster:
        rec = self._await_ready(rec, [n for n in node_ids if rec.node(n) is not None])
        for node_id in node_ids:
            self._emit(rec, f"Cache node {node_id} restarted")

        def done(s: CacheClusterStatus) -> None:
            s.rebooted_seq = seq
            s.phase = "available"

        return self._write_status(rec, done)

    def _config_endpoint(self, rec: CacheCluster) -> None:
        if rec.spec.engine != "memcached":
            return
        name = endpoint_name(rec.account, rec.region, rec.id, "cfg")
        if rec.status.config_host is None or rec.status.config_port is None:
            with self._infra.alloc_lock:
                host, port = self._infra.allocate(self._infra.endpoint_addresses, rec.spec.port, self._store)

                def change(s: CacheClusterStatus) -> None:
                    s.config_host, s.config_port = host, port

                rec = self._write_status(rec, change)
        assert rec.status.config_host is not None and rec.status.config_port is not None
        if name not in self._endpoints:
            # A cluster with TLS: its nodes speak TLS only, and so does the endpoint (AWS: memcached TLS).
            tls = self._infra.endpoint_tls([rec.status.config_host]) if rec.spec.security.transit_encryption else None
            try:
                self._infra.hub.add_memcached_config_endpoint(name, rec.status.config_host, rec.status.config_port,
                                                              tls=tls)
            except OSError as exc:
                raise TemporaryError(f"configuration endpoint: {exc}", delay=0.5) from exc
            self._endpoints.add(name)
        members = [Member(n.host, n.host, n.port) for n in rec.status.nodes if n.status == "available"
                   and not self._health.is_down(self._name(rec, n.node_id))]
        self._infra.hub.set_members(name, members)

    def _settle(self, rec: CacheCluster) -> None:
        """All nodes answer: the cluster is available at the generation we acted on."""
        if any(n.status != "available" for n in rec.status.nodes):
            return
        generation = rec.generation
        first = not rec.status.announced_available
        grown_from = rec.status.modifying_from
        count = len(rec.status.nodes)

        desired = desired_security(self._store, rec)
        secured = desired != AppliedSecurity() or rec.status.security_applied is not None

        def change(r: CacheCluster) -> None:
            if secured:  # the hook (state/acl.py): every node started with it
                r.status.security_applied = desired
            r.status.phase = "available"
            r.status.announced_available = True
            r.status.modifying_from = None
            r.status.failure = None
            r.observed_generation = max(r.observed_generation, generation)

        self._store.update(rec.key, CacheCluster, change)
        if first:
            self._emit(rec, "Cache cluster created")
        elif grown_from is not None and grown_from != count:
            self._emit(rec, f"Finished modifying number of nodes from {grown_from} to {count}")

    # ---- delete ---------------------------------------------------------------------------

    def _delete(self, rec: CacheCluster) -> None:
        # A delete with FinalSnapshotIdentifier waits for the snapshot; if it failed, the cluster
        # stays (as AWS stops the delete) and says so.
        failure = final_snapshot_failure(self._store, rec)
        if failure is not None:
            self._write_status(rec, lambda s: setattr(s, "final_snapshot_failed", rec.spec.final_snapshot))
            self._emit(rec, f"Final snapshot {rec.spec.final_snapshot} failed ({failure}): cache cluster {rec.id} "
                            "was not deleted")
            return
        self._backups.forget(rec)
        self._discard_all(rec)
        cfg = endpoint_name(rec.account, rec.region, rec.id, "cfg")
        if cfg in self._endpoints:
            self._infra.hub.remove(cfg)
            self._endpoints.discard(cfg)
        self._store.delete(rec.key)
        self._emit(rec, "Cache cluster deleted")

    # ---- helpers ------------------------------------------------------------------------

    def _discard_all(self, rec: CacheCluster) -> None:
        for node in rec.status.nodes:
            self._nodes.discard(self._name(rec, node.node_id))
        self._sasl.forget([self._name(rec, n.node_id) for n in rec.status.nodes])

    def _own(self, rec: CacheCluster, node_id: str) -> None:
        # Standalone: no failover hangs on it, a slower watch will do; a member is watched by its group.
        self._nodes.own(self._name(rec, node_id), rec.key, slow=not rec.spec.replication_group_id)

    def _name(self, rec: CacheCluster, node_id: str) -> str:
        return node_name(rec.account, rec.region, rec.id, node_id)

    def _config(self, rec: CacheCluster, node: NodeStatus, version: str, params: dict[str, str]) -> NodeConfig:
        engine = rec.spec.engine
        # Memcached with TLS (CreateCacheCluster allows it for no other engine) or SASL.
        security = self._infra.node_security(node_acl(self._store, rec), [node.host])
        self._sasl.started(self._name(rec, node.node_id), security, rec.spec.security.sasl)
        return build_node_config(
            name=self._name(rec, node.node_id),
            engine=engine,
            version=version,
            host=node.host,
            port=node.port,
            node_type=rec.target().node_type,
            labels={"account": rec.account, "region": rec.region, "cluster": rec.id,
                    "node": node.node_id},
            security=security,
            parameters=params,
        )

    def _set_node(self, rec: CacheCluster, node_id: str, status: str, version: str | None = None,
                  planned: str | None = None) -> CacheCluster:
        def change(s: CacheClusterStatus) -> None:
            for n in s.nodes:
                if n.node_id == node_id:
                    n.status, n.planned = status, planned
                    if version:
                        n.version = version

        return self._write_status(rec, change)

    def _write_status(self, rec: CacheCluster, change: Callable[[CacheClusterStatus], None]) -> CacheCluster:
        def apply(r: CacheCluster) -> None:
            change(r.status)

        updated = self._store.update(rec.key, CacheCluster, apply)
        if updated is None:
            raise TemporaryError("cluster record vanished")  # deleted meanwhile; next pass ends
        return updated

    def _emit(self, rec: CacheCluster, message: str) -> None:
        self._events.emit(rec.account, rec.region, SOURCE, rec.id, message)


def _set_type(status: CacheClusterStatus, node_id: str, node_type: str, tls: str | None,
              params: dict[str, str]) -> None:
    for n in status.nodes:
        if n.node_id == node_id:
            n.node_type = node_type
            n.tls = tls
            parameters.started_with(n, params)


def _set_params(status: CacheClusterStatus, node_id: str, params: dict[str, str]) -> None:
    for n in status.nodes:
        if n.node_id == node_id:
            parameters.started_with(n, params)
