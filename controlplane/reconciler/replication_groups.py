"""Reconcile a replication group (cluster mode disabled): one primary and 0-5 replicas, each a
member cache cluster with one real node; floating primary and reader endpoint addresses; and
the failover state machine, persisted step by step in the group's status.

This reconciler is the only actor on its members' nodes: the cache-cluster reconciler hands
member clusters over to it, so no two loops ever race on a node.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from controlplane import catalog
from controlplane.catalog import resolve_version
from controlplane.clock import Clock
from controlplane.reconciler.errors import PermanentError, TemporaryError
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import Infra, build_node_config, endpoint_name, node_name
from controlplane.reconciler.schedule import in_weekly_window
from controlplane.state.events import EventLog
from controlplane.state.members import members_of, sync_members
from controlplane.state.records import (
    CacheCluster,
    FailoverState,
    NodeStatus,
    PendingChanges,
    PrimaryChange,
    ReplicationGroup,
    ReplicationGroupStatus,
    ResourceKey,
)
from controlplane.state.store import Store
from engine.proxy.tcp import ProxyError
from engine.runtime.base import NodeState, ProbeResult, RuntimeError_

log = logging.getLogger("elasticache_local.failover")

RG = "replication-group"
CC = "cache-cluster"
NODE_ID = "0001"
READY_TIMEOUT = 3.0
PROMOTION_TIMEOUT = 5.0
PROBE_TIMEOUT = 0.25


# A proxied endpoint whose target is not known (a re-point failed half way): the next pass sets it.
UNKNOWN = ("", -1)


class ReplicationGroupReconciler:
    kind = ReplicationGroup.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog, clock: Clock, health: HealthMonitor) -> None:
        self._store = store
        self._infra = infra
        self._events = events
        self._clock = clock
        self._health = health
        # Floating addresses we last told each node to hold; forgotten on restart, so the
        # first pass re-applies them (idempotent).
        self._applied: dict[str, tuple[str, ...]] = {}
        # Groups whose primary is down with no replica to promote, already reported.
        self._aborted: set[ResourceKey] = set()
        # Proxied endpoints served by this process's hub -> their current target.
        self._forwarders: dict[str, tuple[str, int] | None] = {}

    # ---- entry points -----------------------------------------------------------------

    def startup(self) -> None:
        for rg in self._store.records(ReplicationGroup):
            for member in members_of(self._store, rg):
                self._own(rg, member.id)

    def reconcile(self, key: ResourceKey) -> None:
        rg = self._store.get(key, ReplicationGroup)
        if rg is None:
            return
        members = members_of(self._store, rg)
        if rg.spec.delete_requested:
            self._delete(rg, members)
            return
        version = self._version(rg)
        rg = self._endpoints(rg, version)
        if rg.status.primary is None:
            first = rg.spec.initial_primary or (members[0].id if members else None)
            rg = self._write(rg, lambda s: setattr(s, "primary", first))
        members = self._remove_members(rg, members)
        members = self._plan_members(rg, members)
        if rg.status.failover is None:
            rg = self._maybe_start_failover(rg, members)
        if rg.status.failover is not None:
            rg = self._failover(rg, version)
            members = members_of(self._store, rg)
        members, blocked = self._run_members(rg, members, version)
        rg = self._switchover(rg, members, version)
        rg = self._apply_pending(rg)
        rg = self._roll(rg, members_of(self._store, rg), version)
        rg = self._place_addresses(rg, members_of(self._store, rg))
        self._reboots(rg, members, version)
        self._settle(rg, members_of(self._store, rg))
        if blocked:  # the rest of the group was converged first: endpoints still move
            raise TemporaryError(f"members {', '.join(blocked)} wait for their availability zone", delay=1.0)

    def fail(self, key: ResourceKey, message: str) -> None:
        rg = self._store.get(key, ReplicationGroup)
        if rg is None:
            return

        if rg.status.failure == message:
            return  # already reported; the resync retries quietly

        def change(s: ReplicationGroupStatus) -> None:
            s.phase = "create-failed" if not s.announced_available else s.phase
            s.failure = message

        self._write(rg, change)
        verb = "create" if not rg.status.announced_available else "repair"
        self._emit(RG, rg.id, rg, f"Failed to {verb} replication group: {message}")

    # ---- set-up steps -------------------------------------------------------------------

    def _version(self, rg: ReplicationGroup) -> str:
        available = self._infra.runtime.available_versions()
        chosen, _ = resolve_version(rg.spec.engine, rg.spec.engine_version, available, self._infra.strict_versions)
        if chosen is None:
            raise PermanentError(f"No {rg.spec.engine} {rg.spec.engine_version} can run on this machine")
        return chosen

    def _endpoints(self, rg: ReplicationGroup, version: str) -> ReplicationGroup:
        if rg.status.primary_host is None or rg.status.reader_host is None:
            # Floating addresses need an address per endpoint and `CONFIG SET bind` (7.0+).
            proxied = self._infra.endpoint_addresses.mode != "loopback" or _major(version) < 7
            with self._infra.alloc_lock:
                primary = self._infra.allocate(self._infra.endpoint_addresses, rg.spec.port, self._store)
                rg = self._write(rg, partial(_set_endpoint, which="primary", address=primary, proxied=proxied))
                reader = self._infra.allocate(self._infra.endpoint_addresses, rg.spec.port, self._store)
                rg = self._write(rg, partial(_set_endpoint, which="reader", address=reader, proxied=proxied))
        if rg.status.proxied:
            for which in ("primary", "reader"):
                name = self._forwarder(rg, which)
                host = rg.status.primary_host if which == "primary" else rg.status.reader_host
                port = rg.status.primary_port if which == "primary" else rg.status.reader_port
                assert host is not None and port is not None
                holder = rg.status.primary if which == "primary" else rg.status.reader_on
                try:
                    # Every pass, with the target it should have: adding is idempotent, and it
                    # brings back a forwarder that died (a HAProxy killed from outside).
                    self._infra.hub.add_tcp_forwarder(name, host, port, self._target(rg, holder))
                except (OSError, ProxyError) as exc:
                    raise TemporaryError(f"endpoint {host}:{port}: {exc}", delay=0.5) from exc
                self._forwarders.setdefault(name, None)
        return rg

    def _forwarder(self, rg: ReplicationGroup, which: str) -> str:
        return endpoint_name(rg.account, rg.region, rg.id, which)

    def _point(self, rg: ReplicationGroup, which: str, member_id: str | None, drop_existing: bool = False) -> None:
        """Proxied endpoints: send new connections of `which` to the member's node."""
        name = self._forwarder(rg, which)
        target = self._target(rg, member_id)
        if self._forwarders.get(name, UNKNOWN) != target or drop_existing:
            try:
                self._infra.hub.set_target(name, target, drop_existing=drop_existing)
            except ProxyError as exc:
                # Still a known endpoint (a group delete removes it); where it points is not known.
                self._forwarders[name] = UNKNOWN
                raise TemporaryError(f"endpoint {name}: {exc}", delay=0.2) from exc
            self._forwarders[name] = target

    def _target(self, rg: ReplicationGroup, member_id: str | None) -> tuple[str, int] | None:
        member = self._store.get(ResourceKey(CacheCluster.KIND, rg.account, rg.region, member_id or ""), CacheCluster)
        if member is not None and member.status.nodes:
            return member.status.nodes[0].host, member.status.nodes[0].port
        return None

    def _plan_members(self, rg: ReplicationGroup, members: list[CacheCluster]) -> list[CacheCluster]:
        """Give every member without a node a node slot: id 0001, an AZ, an address of its own."""
        out = []
        zones = catalog.availability_zones(rg.region)
        for index, member in enumerate(members):
            if not member.status.nodes:
                with self._infra.alloc_lock:
                    host, port = self._infra.allocate(self._infra.node_addresses, rg.spec.port, self._store)
                    # Without a preference, members are spread over the region's zones as AWS does.
                    az = member.spec.preferred_azs[0] if member.spec.preferred_azs else zones[index % len(zones)]
                    node = NodeStatus(node_id=NODE_ID, status="creating", az=az, host=host, port=port,
                                      created_at=self._clock.now())

                    def add(c: CacheCluster, node: NodeStatus = node) -> None:
                        c.status.nodes = [node]
                        c.status.phase = c.status.phase or "creating"
                        c.status.last_node_number = 1

                    member = self._update_member(member, add)
                self._emit(CC, member.id, rg, f"Added cache node {NODE_ID} in availability zone {node.az}")
            self._own(rg, member.id)
            out.append(member)
        return out

    def _remove_members(self, rg: ReplicationGroup, members: list[CacheCluster]) -> list[CacheCluster]:
        keep = []
        for member in members:
            if not member.spec.delete_requested or member.id == rg.status.primary:
                keep.append(member)
                continue
            self._discard(self._name(rg, member.id))
            if rg.status.reader_on == member.id:
                rg = self._write(rg, lambda s: setattr(s, "reader_on", None))
            self._store.delete(member.key)
            self._emit(CC, member.id, rg, "Cache cluster deleted")
        return keep

    # ---- nodes --------------------------------------------------------------------------

    def _run_members(self, rg: ReplicationGroup, members: list[CacheCluster],
                     version: str) -> tuple[list[CacheCluster], list[str]]:
        """Every member's node runs with its role; recover the dead, converge the roles."""
        runtime = self._infra.runtime
        primary = self._member(members, rg.status.primary)
        starting: list[str] = []
        blocked: list[str] = []
        for member in members:
            name = self._name(rg, member.id)
            info = runtime.inspect(name)
            alive = info is not None and info.state != NodeState.EXITED
            node = member.status.nodes[0]
            if alive and node.status == "available" and self._health.is_down(name):
                # Frozen or hung (the primary's case went to failover when that was possible):
                # make it surely dead so it comes back below.
                runtime.kill(name)
                alive = False
            if alive:
                if node.status != "available":
                    starting.append(member.id)
                continue
            if primary is None:
                raise TemporaryError("no primary to replicate from")
            if self._infra.az_down(node.az, self._clock.monotonic()):
                blocked.append(member.id)  # its zone is interrupted: it comes back afterwards
                continue
            if node.status == "available":
                self._emit(CC, member.id, rg, f"Recovering cache nodes {NODE_ID}")
                member = self._set_member_node(member, "rebooting")
            self._start(rg, member, primary, version)
            starting.append(member.id)
        members = members_of(self._store, rg)
        if starting:
            members = self._await_members(rg, members, starting)
        self._converge_roles(rg, members)
        return members_of(self._store, rg), blocked

    def _start(self, rg: ReplicationGroup, member: CacheCluster, primary: CacheCluster, version: str,
               fresh: bool = False) -> None:
        name = self._name(rg, member.id)
        node = member.status.nodes[0]
        settings: dict[str, str] = {}
        if member.id != primary.id:
            p = primary.status.nodes[0]
            settings["replicaof"] = f"{p.host} {p.port}"
        extra = self._wanted_addresses(rg, member.id)
        if extra:
            settings["bind"] = " ".join(extra)
        if fresh:
            self._infra.runtime.remove(name)  # a new replica starts empty and syncs from the primary
        config = build_node_config(name=name, engine=rg.spec.engine, version=version, host=node.host,
                                   port=node.port, node_type=rg.spec.node_type,
                                   labels={"account": rg.account, "region": rg.region, "cluster": member.id,
                                           "node": NODE_ID, "group": rg.id},
                                   settings=settings)
        try:
            self._infra.runtime.start(config)
        except RuntimeError_ as exc:
            if exc.temporary:
                raise TemporaryError(f"{member.id}: {exc}", delay=0.3) from exc
            raise PermanentError(f"{member.id}: {exc}") from exc
        self._applied[name] = tuple(extra)
        self._health.revive(name)
        node_type = rg.spec.node_type

        def started(c: CacheCluster) -> None:
            c.status.nodes[0].node_type = node_type

        self._update_member(member, started)

    def _await_members(self, rg: ReplicationGroup, members: list[CacheCluster], ids: list[str]) -> list[CacheCluster]:
        """Wait until the started members answer with the right role; a replica is ready only
        once it has received a mark put in the primary's stream after its link came up (a link
        can be "up" while the primary still holds the stream back, e.g. for a second after a
        `CONFIG SET bind` during the first sync)."""
        waiting = list(ids)
        marks: dict[str, int] = {}
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting:
            for member_id in list(waiting):
                member = self._member(members, member_id)
                if member is None:
                    waiting.remove(member_id)
                    continue
                result = self._infra.runtime.probe(self._name(rg, member_id), PROBE_TIMEOUT)
                if not result.ok or not self._role_ok(rg, member_id, result):
                    continue
                if member_id != rg.status.primary and rg.status.primary is not None:
                    if member_id not in marks:
                        try:
                            marks[member_id] = self._infra.runtime.replication_mark(
                                self._name(rg, rg.status.primary))
                        except RuntimeError_ as exc:
                            raise TemporaryError(str(exc)) from exc
                        continue
                    if _offset(result) < marks[member_id]:
                        continue
                waiting.remove(member_id)
                was = member.status.nodes[0].status
                self._set_member_node(member, "available", version=result.version)
                if was == "rebooting":
                    self._emit(CC, member_id, rg, f"Finished recovery for cache nodes {NODE_ID}")
            if not waiting:
                break
            if time.monotonic() > deadline:
                raise TemporaryError(f"members {', '.join(waiting)} are not replicating yet", delay=0.2)
            # Until a starting member reports that it serves (a replica: once its first sync is
            # done), or the runtime's short pause where no report comes; the probes decide.
            self._infra.runtime.wait_ready(self._name(rg, waiting[0]), max(0.0, deadline - time.monotonic()))
        return members_of(self._store, rg)

    def _role_ok(self, rg: ReplicationGroup, member_id: str, result: ProbeResult) -> bool:
        if member_id == rg.status.primary:
            return result.role == "master"
        return result.role == "slave" and result.details.get("master_link_status") == "up"

    def _converge_roles(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        """Level-triggered: a node whose role is not what the group's status says is told."""
        primary = self._member(members, rg.status.primary)
        if primary is None or rg.status.failover is not None:
            return
        p = primary.status.nodes[0]
        for member in members:
            name = self._name(rg, member.id)
            result = self._health.last_probe(name) or self._infra.runtime.probe(name, PROBE_TIMEOUT)
            if not result.ok:
                continue
            try:
                if member.id == primary.id and result.role != "master":
                    self._infra.runtime.replicate(name, None)
                elif member.id != primary.id and result.role == "master":
                    self._infra.runtime.replicate(name, (p.host, p.port))
            except RuntimeError_ as exc:
                raise TemporaryError(str(exc)) from exc

    # ---- floating endpoint addresses ----------------------------------------------------

    def _wanted_addresses(self, rg: ReplicationGroup, member_id: str) -> list[str]:
        if rg.status.proxied:
            return []
        extra = []
        if member_id == rg.status.primary and rg.status.primary_host:
            extra.append(rg.status.primary_host)
        if member_id == rg.status.reader_on and rg.status.reader_host:
            extra.append(rg.status.reader_host)
        return extra

    def _place_addresses(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        """The primary address on the primary; the reader address on one healthy replica (the
        primary when there is none). Addresses are dropped from old holders before they are
        added to new ones: one address, one listener."""
        healthy = [m.id for m in members if m.id != rg.status.primary and m.status.nodes
                   and m.status.nodes[0].status == "available"
                   and not self._health.is_down(self._name(rg, m.id))]
        reader = rg.status.reader_on if rg.status.reader_on in healthy else (
            healthy[0] if healthy else rg.status.primary)
        if reader != rg.status.reader_on:
            rg = self._write(rg, lambda s: setattr(s, "reader_on", reader))
        if rg.status.proxied:
            self._point(rg, "primary", rg.status.primary)
            self._point(rg, "reader", rg.status.reader_on)
            return rg
        wanted = {m.id: tuple(self._wanted_addresses(rg, m.id)) for m in members}
        runtime = self._infra.runtime
        # First every release, then every claim.
        for phase in ("release", "claim"):
            for member_id, extra in wanted.items():
                name = self._name(rg, member_id)
                current = self._applied.get(name)
                if current == extra:
                    continue
                releasing = current is None or not set(current) <= set(extra)
                if (phase == "release") != releasing:
                    continue
                target = tuple(a for a in (current or ()) if a in extra) if phase == "release" else extra
                try:
                    runtime.set_addresses(name, list(target))
                except RuntimeError_ as exc:
                    if self._health.is_down(name):
                        continue  # a dead node holds nothing; it gets its addresses when it restarts
                    raise TemporaryError(str(exc), delay=0.1) from exc
                self._applied[name] = target
        return rg

    # ---- failover -----------------------------------------------------------------------

    def _maybe_start_failover(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        request = rg.spec.test_failover
        if request is not None and request.seq > rg.status.test_failover_done and rg.status.primary:
            self._emit(RG, rg.id, rg, f"Test Failover API called for node group {request.node_group}")
            if not self._eligible(rg, members, rg.status.primary, []):
                # Nothing can take over: the primary is left alone rather than killed for nothing.
                self._emit(RG, rg.id, rg, f"Test failover of node group {request.node_group} aborted: no healthy "
                                          "replica can be promoted")
                return self._write(rg, partial(_test_done, seq=request.seq))
            return self._begin(rg, "test", request.seq)
        if not rg.status.announced_available or rg.status.primary is None:
            return rg
        name = self._name(rg, rg.status.primary)
        info = self._infra.runtime.inspect(name)
        dead = info is None or info.state == NodeState.EXITED
        if not (dead or self._health.is_down(name)):
            self._aborted.discard(rg.key)
            return rg
        if not rg.spec.automatic_failover:
            return rg  # _run_members restarts the primary in place
        if not self._eligible(rg, members, rg.status.primary, []):
            if rg.key not in self._aborted:
                self._aborted.add(rg.key)
                self._emit(RG, rg.id, rg, f"Failover of primary node {rg.status.primary} aborted: no healthy "
                                          "replica can be promoted; restarting the primary")
            return rg
        log.warning("%s: primary %s is down; failing over", rg.id, rg.status.primary)
        return self._begin(rg, "automatic", 0)

    def _begin(self, rg: ReplicationGroup, reason: str, seq: int) -> ReplicationGroup:
        assert rg.status.primary is not None
        state = FailoverState(step="fence", reason=reason, old_primary=rg.status.primary,
                              started_at=self._clock.now(), test_seq=seq)
        return self._write(rg, lambda s: setattr(s, "failover", state))

    def _eligible(self, rg: ReplicationGroup, members: list[CacheCluster], old: str,
                  excluded: list[str]) -> list[tuple[CacheCluster, ProbeResult]]:
        out = []
        for m in members:
            if m.id == old or m.id in excluded or not m.status.nodes:
                continue
            result = self._infra.runtime.probe(self._name(rg, m.id), PROBE_TIMEOUT)
            if result.ok and result.role == "slave":
                out.append((m, result))
        return out

    def _failover(self, rg: ReplicationGroup, version: str) -> ReplicationGroup:
        """Run the state machine from its persisted step to the end (or to a wait)."""
        runtime = self._infra.runtime
        for _ in range(20):  # bounded: each step either advances or ends the machine
            fo = rg.status.failover
            if fo is None:
                return rg
            members = members_of(self._store, rg)
            old_name = self._name(rg, fo.old_primary)
            if fo.step == "fence":
                # Surely dead: it releases the primary address and takes no more writes.
                runtime.kill(old_name)
                self._applied.pop(old_name, None)
                rg = self._step(rg, "select")
            elif fo.step == "select":
                candidates = self._eligible(rg, members, fo.old_primary, fo.excluded)
                if not candidates:
                    self._emit(RG, rg.id, rg, f"Failover of primary node {fo.old_primary} aborted: no healthy "
                                              "replica can be promoted; restarting the primary")
                    return self._end(rg, fo)
                best = max(candidates, key=lambda c: (_offset(c[1]), [-ord(ch) for ch in c[0].id]))[0]
                rg = self._step(rg, "promote", candidate=best.id)
            elif fo.step == "promote":
                assert fo.candidate is not None
                try:
                    runtime.replicate(self._name(rg, fo.candidate), None)
                    rg = self._step(rg, "wait_promotion")
                except RuntimeError_:
                    rg = self._step(rg, "select", exclude=fo.candidate)
            elif fo.step == "wait_promotion":
                assert fo.candidate is not None
                if self._wait_role(self._name(rg, fo.candidate), "master"):
                    rg = self._step(rg, "repoint")
                else:
                    rg = self._step(rg, "select", exclude=fo.candidate)
            elif fo.step == "repoint":
                assert fo.candidate is not None
                candidate = fo.candidate
                # The endpoint moves first; the candidate is recorded as primary only once it holds
                # it, so a candidate that died since its promotion sends us back to select.
                try:
                    if rg.status.proxied:
                        self._point(rg, "primary", candidate, drop_existing=True)
                    else:
                        # The candidate may hold the reader address: drop it, then take the primary's.
                        self._release_all(rg, candidate)
                        runtime.set_addresses(self._name(rg, candidate), [rg.status.primary_host or ""])
                        self._applied[self._name(rg, candidate)] = (rg.status.primary_host or "",)
                except RuntimeError_ as exc:
                    log.warning("%s: %s cannot take the primary endpoint (%s)", rg.id, candidate, exc)
                    rg = self._step(rg, "select", exclude=candidate)
                    continue
                rg = self._write(rg, partial(_repoint, old=fo.old_primary, new=candidate))
                text = f"Failover from primary node {fo.old_primary} to replica node {candidate} completed"
                self._emit(CC, fo.old_primary, rg, text)
                self._emit(RG, rg.id, rg, text)
                rg = self._step(rg, "reconfigure")
            elif fo.step == "reconfigure":
                new = self._member(members, rg.status.primary)
                assert new is not None
                p = new.status.nodes[0]
                for m in members:
                    if m.id in (new.id, fo.old_primary):
                        continue
                    try:
                        runtime.replicate(self._name(rg, m.id), (p.host, p.port))
                    except RuntimeError_ as exc:
                        log.warning("%s: re-pointing %s failed (%s); it is recovered later", rg.id, m.id, exc)
                rg = self._step(rg, "replace")
            elif fo.step == "replace":
                new = self._member(members, rg.status.primary)
                old = self._member(members, fo.old_primary)
                assert new is not None
                if old is not None:
                    self._emit(CC, old.id, rg, f"Recovering cache nodes {NODE_ID}")
                    old = self._set_member_node(old, "rebooting")
                    try:
                        if not self._infra.az_down(old.status.nodes[0].az, self._clock.monotonic()):
                            self._start(rg, old, new, version, fresh=True)
                        else:
                            # Its zone is down: it is started, empty, when the zone is back.
                            self._infra.runtime.remove(self._name(rg, old.id))
                    except (TemporaryError, PermanentError, RuntimeError_) as exc:
                        # The failover is done; the replacement is retried as a recovery.
                        log.warning("%s: replacing %s failed (%s); retried later", rg.id, old.id, exc)
                return self._end(rg, fo)
        return rg

    def _step(self, rg: ReplicationGroup, step: str, candidate: str | None = None,
              exclude: str | None = None) -> ReplicationGroup:
        def change(s: ReplicationGroupStatus) -> None:
            assert s.failover is not None
            s.failover.step = step
            if candidate is not None:
                s.failover.candidate = candidate
            if exclude is not None:
                s.failover.excluded.append(exclude)

        log.info("%s: failover step %s", rg.id, step)
        return self._write(rg, change)

    def _end(self, rg: ReplicationGroup, fo: FailoverState) -> ReplicationGroup:
        def change(s: ReplicationGroupStatus) -> None:
            s.failover = None
            if fo.reason == "test":
                s.test_failover_done = max(s.test_failover_done, fo.test_seq)

        return self._write(rg, change)

    def _wait_role(self, name: str, role: str) -> bool:
        deadline = time.monotonic() + PROMOTION_TIMEOUT
        while time.monotonic() < deadline:
            result = self._infra.runtime.probe(name, PROBE_TIMEOUT)
            if result.ok and result.role == role:
                return True
            time.sleep(0.002)
        return False

    def _release_all(self, rg: ReplicationGroup, member_id: str) -> None:
        name = self._name(rg, member_id)
        if self._applied.get(name):
            self._infra.runtime.set_addresses(name, [])
            self._applied[name] = ()

    # ---- planned switchover, reboots ----------------------------------------------------

    def _switchover(self, rg: ReplicationGroup, members: list[CacheCluster], version: str,
                    change: PrimaryChange | None = None) -> ReplicationGroup:
        """A planned switchover (ModifyReplicationGroup PrimaryClusterId, or before restarting the
        primary): no acknowledged write is lost and nobody is killed. `FAILOVER TO` pauses writes
        on the old primary until the replica has them all; then the endpoint moves and the old
        primary's clients are disconnected, so they reconnect through the endpoint."""
        change = change or rg.spec.primary_change
        if change is None or change.seq <= rg.status.primary_change_done:
            return rg
        old, new = self._member(members, rg.status.primary), self._member(members, change.member)
        if new is None or old is None or new.id == old.id:
            return self._write(rg, lambda s: setattr(s, "primary_change_done", change.seq))
        runtime = self._infra.runtime
        old_name, new_name = self._name(rg, old.id), self._name(rg, new.id)
        target = (new.status.nodes[0].host, new.status.nodes[0].port)
        try:
            if _version_tuple(version) >= (6, 2):
                runtime.hand_over(old_name, target)
            else:  # no FAILOVER command before 6.2: promote, then demote
                runtime.replicate(new_name, None)
                if not self._wait_role(new_name, "master"):
                    raise RuntimeError_(f"{new.id} was not promoted")
                runtime.replicate(old_name, target)
        except RuntimeError_ as exc:
            raise TemporaryError(f"switchover to {new.id}: {exc}", delay=0.5) from exc

        def switch(s: ReplicationGroupStatus) -> None:
            s.primary = new.id
            s.primary_change_done = change.seq
            s.reader_on = None

        rg = self._write(rg, switch)
        if rg.status.proxied:
            self._point(rg, "primary", new.id, drop_existing=True)
        else:
            self._release_all(rg, old.id)
            self._release_all(rg, new.id)
            runtime.set_addresses(new_name, [rg.status.primary_host or ""])
            self._applied[new_name] = (rg.status.primary_host or "",)
        with contextlib.suppress(RuntimeError_):
            runtime.disconnect_clients(old_name)
        for m in members:
            if m.id not in (new.id, old.id):
                with contextlib.suppress(RuntimeError_):  # converged later if it fails now
                    runtime.replicate(self._name(rg, m.id), target)
        self._emit(RG, rg.id, rg, f"Primary cluster changed from {old.id} to {new.id}")
        return rg

    def _apply_pending(self, rg: ReplicationGroup) -> ReplicationGroup:
        """Node type and engine version asked without ApplyImmediately: in the maintenance window."""
        if rg.spec.pending.empty() or rg.api_status() != "available":
            return rg
        if not in_weekly_window(rg.spec.maintenance_window, self._clock.now()):
            return rg

        def apply(r: ReplicationGroup) -> None:
            if r.spec.pending.node_type is not None:
                r.spec.node_type = r.spec.pending.node_type
            if r.spec.pending.engine_version is not None:
                r.spec.engine_version = r.spec.pending.engine_version
            r.spec.pending = PendingChanges()
            r.generation += 1

        updated = self._store.update(rg.key, ReplicationGroup, apply)
        if updated is None:
            raise TemporaryError("replication group vanished")
        sync_members(self._store, updated)
        self._emit(RG, rg.id, updated, "Applying pending modifications in the maintenance window")
        return updated

    def _roll(self, rg: ReplicationGroup, members: list[CacheCluster], version: str) -> ReplicationGroup:
        """Restart, one at a time, the nodes not running the group's node type and version:
        replicas first; then the primary, after a switchover to a replica when there is one."""
        def stale(m: CacheCluster) -> bool:
            node = m.status.nodes[0] if m.status.nodes else None
            return node is not None and node.status == "available" and (
                node.node_type not in (None, rg.spec.node_type) or node.version not in (None, version))

        outdated = [m for m in members if stale(m)]
        if not outdated or rg.status.failover is not None:
            return rg
        primary = self._member(members, rg.status.primary)
        assert primary is not None
        replicas = [m for m in outdated if m.id != primary.id]
        if replicas:
            member = replicas[0]
        else:
            others = [m for m in members if m.id != primary.id]
            if others:  # the primary is the last: hand its role to an updated replica first
                target = others[0]
                change = PrimaryChange(seq=rg.status.primary_change_done + 1, member=target.id)
                rg = self._switchover(rg, members, version, change)
                return self._roll(rg, members_of(self._store, rg), version)
            member = primary
        name = self._name(rg, member.id)
        self._emit(CC, member.id, rg, f"Restarting cache node {NODE_ID} with {rg.spec.engine} {version} on "
                                      f"{rg.spec.node_type}")
        member = self._set_member_node(member, "rebooting")
        self._infra.runtime.stop(name)
        current = self._member(members_of(self._store, rg), rg.status.primary)
        assert current is not None
        self._start(rg, member, current, version)
        self._await_members(rg, members_of(self._store, rg), [member.id])
        if len(outdated) > 1:
            raise TemporaryError("rolling the next node", delay=0.0)
        return rg

    def _reboots(self, rg: ReplicationGroup, members: list[CacheCluster], version: str) -> None:
        """RebootCacheCluster on a member: restart its node in place (no failover, as in AWS)."""
        primary = self._member(members, rg.status.primary)
        for member in members:
            request = member.spec.reboot
            if request is None or request.seq <= member.status.rebooted_seq or primary is None:
                continue
            name = self._name(rg, member.id)
            member = self._set_member_node(member, "rebooting")
            self._infra.runtime.stop(name)
            self._emit(CC, member.id, rg, f"Cache node {NODE_ID} shutdown")
            self._start(rg, member, primary, version)
            self._await_members(rg, members_of(self._store, rg), [member.id])
            self._emit(CC, member.id, rg, f"Cache node {NODE_ID} restarted")
            self._update_member(member, partial(_rebooted, seq=request.seq))

    # ---- status -------------------------------------------------------------------------

    def _settle(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        if rg.status.failover is not None:
            return
        if any(not m.status.nodes or m.status.nodes[0].status != "available" for m in members):
            return
        generation = rg.generation
        first = not rg.status.announced_available
        for member in members:
            if member.status.phase != "available" or not member.status.announced_available:
                created = not member.status.announced_available

                def ready(c: CacheCluster) -> None:
                    c.status.phase = "available"
                    c.status.announced_available = True
                    c.observed_generation = c.generation

                self._update_member(member, ready)
                if created:
                    self._emit(CC, member.id, rg, "Cache cluster created")

        def change(r: ReplicationGroup) -> None:
            r.status.phase = "available"
            r.status.af_applied = r.spec.automatic_failover if r.generation == generation else r.status.af_applied
            r.status.announced_available = True
            r.status.failure = None
            r.observed_generation = max(r.observed_generation, generation)

        self._store.update(rg.key, ReplicationGroup, change)
        if first:
            self._emit(RG, rg.id, rg, f"Replication group {rg.id} created")

    def _delete(self, rg: ReplicationGroup, members: list[CacheCluster]) -> None:
        for member in members:
            name = self._name(rg, member.id)
            if rg.spec.retain_primary_cluster and member.id == rg.status.primary:
                # Kept as a standalone cluster: it stops holding the group's addresses.
                with contextlib.suppress(RuntimeError_):
                    self._infra.runtime.set_addresses(name, [])
                self._applied.pop(name, None)
                self._health.watch(name, member.key, slow=True)  # as the standalone cluster it becomes
                self._infra.node_owner[name] = member.key

                def standalone(c: CacheCluster) -> None:
                    c.spec.replication_group_id = None

                self._update_member(member, standalone)
                continue
            self._discard(name)
            self._store.delete(member.key)
            self._emit(CC, member.id, rg, "Cache cluster deleted")
        for which in ("primary", "reader"):
            name = self._forwarder(rg, which)
            self._forwarders.pop(name, None)
            if rg.status.proxied:  # unknown names are ignored: whatever this process knows of it
                self._infra.hub.remove(name)
        self._store.delete(rg.key)
        self._emit(RG, rg.id, rg, f"Replication group {rg.id} deleted")

    # ---- helpers ------------------------------------------------------------------------

    def _own(self, rg: ReplicationGroup, member_id: str) -> None:
        name = self._name(rg, member_id)
        self._infra.node_owner[name] = rg.key
        self._health.watch(name, rg.key)

    def _discard(self, name: str) -> None:
        self._health.unwatch(name)
        self._infra.node_owner.pop(name, None)
        self._applied.pop(name, None)
        self._infra.runtime.kill(name)
        self._infra.runtime.remove(name)

    @staticmethod
    def _member(members: list[CacheCluster], member_id: str | None) -> CacheCluster | None:
        return next((m for m in members if m.id == member_id), None)

    def _name(self, rg: ReplicationGroup, member_id: str) -> str:
        return node_name(rg.account, rg.region, member_id, NODE_ID)

    def _write(self, rg: ReplicationGroup, change: Callable[[ReplicationGroupStatus], Any]) -> ReplicationGroup:
        def apply(r: ReplicationGroup) -> None:
            change(r.status)

        updated = self._store.update(rg.key, ReplicationGroup, apply)
        if updated is None:
            raise TemporaryError("replication group vanished")
        return updated

    def _update_member(self, member: CacheCluster, change: Callable[[CacheCluster], Any]) -> CacheCluster:
        updated = self._store.update(member.key, CacheCluster, change)
        if updated is None:
            raise TemporaryError(f"member {member.id} vanished")
        return updated

    def _set_member_node(self, member: CacheCluster, status: str, version: str | None = None) -> CacheCluster:
        def change(c: CacheCluster) -> None:
            for n in c.status.nodes:
                n.status = status
                if version:
                    n.version = version
                    c.status.engine_version = version

        return self._update_member(member, change)

    def _emit(self, source_type: str, source_id: str, rg: ReplicationGroup, message: str) -> None:
        self._events.emit(rg.account, rg.region, source_type, source_id, message)


def _offset(result: ProbeResult) -> int:
    try:
        return int(result.details.get("slave_repl_offset", "0"))
    except ValueError:
        return 0


def _rebooted(member: CacheCluster, seq: int) -> None:
    member.status.rebooted_seq = seq


def _repoint(status: ReplicationGroupStatus, old: str, new: str) -> None:
    status.primary = new
    if status.reader_on in (old, new):
        status.reader_on = None


def _set_endpoint(status: ReplicationGroupStatus, which: str, address: tuple[str, int], proxied: bool) -> None:
    status.proxied = proxied
    if which == "primary":
        status.primary_host, status.primary_port = address
    else:
        status.reader_host, status.reader_port = address


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0


def _test_done(status: ReplicationGroupStatus, seq: int) -> None:
    status.test_failover_done = max(status.test_failover_done, seq)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))
