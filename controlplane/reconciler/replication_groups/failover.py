"""Multi-AZ failover: a state machine persisted step by step in the group's status, so a
restarted control plane resumes it from its step (see FailoverStep for the steps).

Time is the injected clock's and lives in status: `started_at` (the overall `timeout` counts from
it: a failover that has not moved the endpoint by then is aborted, with an event, and decided
again from fresh observations), `entered_at` of the current step (a promotion not seen within
PROMOTION_TIMEOUT gives up that candidate), and the group's `last_failover_at` (no automatic
failover starts within `cooldown` after the previous one ended, as Sentinel will not fail the same
master over again within its failover-timeout; TestFailover has AWS's own limit, 15 per rolling
24 h, and is not held). Every transition is logged and passed to the optional observer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from controlplane.reconciler.errors import PermanentError, Requeue, TemporaryError
from controlplane.reconciler.replication_groups.context import CC, NODE_ID, RG, GroupContext, member
from controlplane.reconciler.replication_groups.endpoints import Endpoints
from controlplane.reconciler.replication_groups.members import Members, eligible, offset
from controlplane.state.records import (
    CacheCluster,
    FailoverState,
    FailoverStep,
    ReplicationGroup,
    ReplicationGroupStatus,
    ResourceKey,
)
from engine import NodeState, RuntimeError_

log = logging.getLogger("elasticache_local.failover")

PROMOTION_TIMEOUT = 5.0  # seconds a promoted replica may take to report role:master
PROMOTION_POLL = 0.002  # seconds until a promotion not seen yet is looked at again
# Steps before the endpoint moves: the overall timeout aborts these. Later steps do not wait.
BEFORE_REPOINT = (FailoverStep.DETECTED, FailoverStep.FENCE, FailoverStep.SELECT, FailoverStep.PROMOTE,
                  FailoverStep.WAIT_PROMOTION)


@dataclass(frozen=True)
class Transition:
    """One step of a failover, for an observer (e.g. a live feed)."""

    group: ResourceKey
    step: FailoverStep  # the step entered (DONE: the failover ended)
    previous: FailoverStep | None  # None: the failover begins
    reason: str  # "automatic" | "test"
    at: datetime
    note: str = ""  # why, where it is not the plain next step (an abort, a candidate given up)
    started_at: datetime | None = None  # when the failover began (its duration, at DONE)


Observer = Callable[[Transition], None]
Step = Callable[["Failover", ReplicationGroup, FailoverState, list[CacheCluster], str], ReplicationGroup]


class Failover:
    def __init__(self, ctx: GroupContext, endpoints: Endpoints, members: Members, *,
                 timeout: float, cooldown: float, observer: Observer | None = None) -> None:
        self._ctx = ctx
        self._endpoints = endpoints
        self._members = members
        self.timeout = timeout
        self.cooldown = cooldown
        self.observer = observer  # told of every transition (a live feed); None: nobody

    # ---- starting -----------------------------------------------------------------------

    def check(self, rg: ReplicationGroup, members: list[CacheCluster]) -> tuple[ReplicationGroup, float | None]:
        """Begin a failover when one is due. Returns the group and, when an automatic failover
        waits for the cooldown, the seconds until it may begin (its dead primary is meanwhile
        not restarted in place)."""
        ctx = self._ctx
        if rg.status.failover is not None:
            return rg, None  # one at a time: advance() runs it
        request = rg.spec.test_failover
        if request is not None and request.seq > rg.status.test_failover_done and rg.status.primary:
            ctx.emit(RG, rg.id, rg, f"Test Failover API called for node group {request.node_group}")
            if not eligible(ctx, rg, members, rg.status.primary, []):
                # Nothing can take over: the primary is left alone rather than killed for nothing.
                ctx.emit(RG, rg.id, rg, f"Test failover of node group {request.node_group} aborted: no healthy "
                                        "replica can be promoted")
                return ctx.write(rg, partial(_test_done, seq=request.seq)), None
            return self._begin(rg, "test", request.seq), None
        primary = rg.status.primary
        if not rg.status.announced_available or primary is None:
            return rg, None
        name = ctx.name(rg, primary)
        info = ctx.infra.runtime.inspect(name)
        # A primary restarted on purpose (RebootCacheCluster, a rolling change) is silent while it
        # loads its data, over passes of its own: only its exit means it is gone.
        record = member(members, primary)
        rebooting = record is not None and any(n.status == "rebooting" for n in record.status.nodes)
        if not (info is None or info.state == NodeState.EXITED or (ctx.health.is_down(name) and not rebooting)):
            if rg.status.failover_aborted or rg.status.failover_held_until:
                rg = ctx.write(rg, _primary_fine)
            return rg, None
        if not rg.spec.automatic_failover:
            return rg, None  # the primary is restarted in place
        if not eligible(ctx, rg, members, primary, []):
            if rg.status.failover_aborted != primary:
                rg = ctx.write(rg, lambda s: setattr(s, "failover_aborted", primary))
                ctx.emit(RG, rg.id, rg, f"Failover of primary node {primary} aborted: no healthy replica can be "
                                        "promoted; restarting the primary")
            return rg, None
        held = self._cooldown_left(rg)
        if held > 0:
            if rg.status.failover_held_until is None:
                until = ctx.clock.now() + timedelta(seconds=held)
                rg = ctx.write(rg, lambda s: setattr(s, "failover_held_until", until))
                ctx.emit(RG, rg.id, rg, f"Failover of primary node {primary} deferred until {until:%H:%M:%S} UTC: "
                                        f"the previous failover of this group ended less than {self.cooldown:g} s ago")
            return rg, held
        log.warning("%s: primary %s is down; failing over", rg.id, primary)
        return self._begin(rg, "automatic", 0), None

    def _cooldown_left(self, rg: ReplicationGroup) -> float:
        last = rg.status.last_failover_at
        if last is None:
            return 0.0
        return max(0.0, self.cooldown - (self._ctx.clock.now() - last).total_seconds())

    def _begin(self, rg: ReplicationGroup, reason: str, seq: int) -> ReplicationGroup:
        assert rg.status.primary is not None
        now = self._ctx.clock.now()
        state = FailoverState(step=FailoverStep.DETECTED, reason=reason, old_primary=rg.status.primary,
                              started_at=now, entered_at=now, test_seq=seq)

        def begin(s: ReplicationGroupStatus) -> None:
            s.failover = state
            s.failover_aborted = None
            s.failover_held_until = None

        rg = self._ctx.write(rg, begin)
        self._tell(rg, state, None, "")
        return rg

    # ---- running ------------------------------------------------------------------------

    def advance(self, rg: ReplicationGroup, version: str) -> ReplicationGroup:
        """Run the state machine from its persisted step to the end; a step that waits ends the
        pass with a Requeue."""
        for _ in range(30):  # bounded: each step advances, steps back (excluding a candidate) or ends
            fo = rg.status.failover
            if fo is None:
                return rg
            if fo.step in BEFORE_REPOINT and self._elapsed(fo.started_at) > self.timeout:
                rg = self._end(rg, fo, f"Failover of primary node {fo.old_primary} aborted: not completed within "
                                       f"{self.timeout:g} s")
                continue
            rg = self._next(rg, fo, version)
        return rg

    def _next(self, rg: ReplicationGroup, fo: FailoverState, version: str) -> ReplicationGroup:
        """Carry out the current step (a subclass may run other steps: cluster_failover.py)."""
        return STEPS[fo.step](self, rg, fo, self._ctx.members(rg), version)

    def _detected(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                  version: str) -> ReplicationGroup:
        return self._go(rg, FailoverStep.FENCE)

    def _fence(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
               version: str) -> ReplicationGroup:
        # Surely dead: it releases the primary address and takes no more writes.
        self._ctx.infra.runtime.kill(self._ctx.name(rg, fo.old_primary))
        return self._go(rg, FailoverStep.SELECT)

    def _select(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                version: str) -> ReplicationGroup:
        candidates = eligible(self._ctx, rg, members, fo.old_primary, fo.excluded)
        if not candidates:
            return self._end(rg, fo, f"Failover of primary node {fo.old_primary} aborted: no healthy replica can be "
                                     "promoted; restarting the primary")
        best = max(candidates, key=lambda c: (offset(c[1]), [-ord(ch) for ch in c[0].id]))[0]
        return self._go(rg, FailoverStep.PROMOTE, candidate=best.id)

    def _promote(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                 version: str) -> ReplicationGroup:
        assert fo.candidate is not None
        try:
            self._ctx.infra.runtime.replicate(self._ctx.name(rg, fo.candidate), None)
        except RuntimeError_ as exc:
            return self._go(rg, FailoverStep.SELECT, exclude=fo.candidate, note=f"promotion refused: {exc}")
        return self._go(rg, FailoverStep.WAIT_PROMOTION)

    def _wait_promotion(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                        version: str) -> ReplicationGroup:
        assert fo.candidate is not None
        result = self._ctx.probe(rg, fo.candidate)
        if result.ok and result.role == "master":
            return self._go(rg, FailoverStep.REPOINT)
        if self._elapsed(fo.entered_at or fo.started_at) > PROMOTION_TIMEOUT:
            return self._go(rg, FailoverStep.SELECT, exclude=fo.candidate,
                            note=f"promotion not seen within {PROMOTION_TIMEOUT:g} s")
        # REPLICAOF NO ONE switches the role before it answers, so this is rare: look again soon,
        # without holding the worker (the overall timeout bounds the retries).
        raise Requeue(f"waiting for {fo.candidate} to report role:master", delay=PROMOTION_POLL)

    def _repoint(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                 version: str) -> ReplicationGroup:
        candidate = member(members, fo.candidate)
        assert candidate is not None
        # The endpoint moves first; the candidate is recorded as primary only once it holds it,
        # so a candidate that died since its promotion sends us back to select.
        try:
            self._endpoints.claim_primary(rg, candidate)
        except RuntimeError_ as exc:
            log.warning("%s: %s cannot take the primary endpoint (%s)", rg.id, candidate.id, exc)
            return self._go(rg, FailoverStep.SELECT, exclude=candidate.id, note=f"endpoint refused: {exc}")
        rg = self._go(rg, FailoverStep.RECONFIGURE, change=partial(_repoint, old=fo.old_primary, new=candidate.id))
        text = f"Failover from primary node {fo.old_primary} to replica node {candidate.id} completed"
        self._ctx.emit(CC, fo.old_primary, rg, text)
        self._ctx.emit(RG, rg.id, rg, text)
        return rg

    def _reconfigure(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                     version: str) -> ReplicationGroup:
        new = member(members, rg.status.primary)
        assert new is not None
        p = new.status.nodes[0]
        for m in members:
            if m.id in (new.id, fo.old_primary):
                continue
            try:
                self._ctx.infra.runtime.replicate(self._ctx.name(rg, m.id), (p.host, p.port))
            except RuntimeError_ as exc:
                log.warning("%s: re-pointing %s failed (%s); it is recovered later", rg.id, m.id, exc)
        return self._go(rg, FailoverStep.REPLACE)

    def _replace(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
                 version: str) -> ReplicationGroup:
        ctx = self._ctx
        new, old = member(members, rg.status.primary), member(members, fo.old_primary)
        assert new is not None
        if old is not None:
            ctx.emit(CC, old.id, rg, f"Recovering cache nodes {NODE_ID}")
            old = ctx.set_member_node(old, "rebooting")
            try:
                if not ctx.infra.az_down(old.status.nodes[0].az, ctx.clock.monotonic()):
                    self._members.start(rg, old, new, version, fresh=True)
                else:
                    # Its zone is down: it is started, empty, when the zone is back.
                    ctx.infra.runtime.remove(ctx.name(rg, old.id))
                    ctx.set_member_addresses(old, None)
            except (TemporaryError, PermanentError, RuntimeError_) as exc:
                # The failover is done; the replacement is retried as a recovery.
                log.warning("%s: replacing %s failed (%s); retried later", rg.id, old.id, exc)
        return self._go(rg, FailoverStep.DONE)

    def _done(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster],
              version: str) -> ReplicationGroup:
        return self._end(rg, fo, "")

    # ---- transitions --------------------------------------------------------------------

    def _go(self, rg: ReplicationGroup, step: FailoverStep, *, candidate: str | None = None,
            exclude: str | None = None, note: str = "",
            change: Callable[[ReplicationGroupStatus], None] | None = None) -> ReplicationGroup:
        """Enter `step` (one status write, with `change` when given)."""
        now = self._ctx.clock.now()

        def enter(s: ReplicationGroupStatus) -> None:
            assert s.failover is not None
            s.failover.step = step
            s.failover.entered_at = now
            if candidate is not None:
                s.failover.candidate = candidate
            if exclude is not None:
                s.failover.excluded.append(exclude)
            if change is not None:
                change(s)

        previous = rg.status.failover.step if rg.status.failover else None
        rg = self._ctx.write(rg, enter)
        assert rg.status.failover is not None
        self._tell(rg, rg.status.failover, previous, note)
        return rg

    def _end(self, rg: ReplicationGroup, fo: FailoverState, aborted: str) -> ReplicationGroup:
        """The failover is over (completed, or aborted with the event `aborted`): its state is
        cleared; an automatic one starts the cooldown."""
        now = self._ctx.clock.now()

        def end(s: ReplicationGroupStatus) -> None:
            s.failover = None
            if fo.reason == "test":
                s.test_failover_done = max(s.test_failover_done, fo.test_seq)
            else:
                s.last_failover_at = now

        rg = self._ctx.write(rg, end)
        if aborted:
            self._ctx.emit(RG, rg.id, rg, aborted)
        if fo.step != FailoverStep.DONE:  # else told when DONE was entered
            self._tell(rg, fo.model_copy(update={"step": FailoverStep.DONE, "entered_at": now}), fo.step, aborted)
        return rg

    def _tell(self, rg: ReplicationGroup, fo: FailoverState, previous: FailoverStep | None, note: str) -> None:
        if note:
            log.info("%s: failover step %s (%s)", rg.id, fo.step, note)
        else:
            log.info("%s: failover step %s", rg.id, fo.step)
        if self.observer is not None:
            try:
                self.observer(Transition(rg.key, fo.step, previous, fo.reason, fo.entered_at or fo.started_at,
                                          note, fo.started_at))
            except Exception:  # an observer's failure must not stop a failover
                log.exception("failover observer failed")

    def _elapsed(self, since: datetime) -> float:
        return (self._ctx.clock.now() - since).total_seconds()


STEPS: dict[FailoverStep, Step] = {
    FailoverStep.DETECTED: Failover._detected,
    FailoverStep.FENCE: Failover._fence,
    FailoverStep.SELECT: Failover._select,
    FailoverStep.PROMOTE: Failover._promote,
    FailoverStep.WAIT_PROMOTION: Failover._wait_promotion,
    FailoverStep.REPOINT: Failover._repoint,
    FailoverStep.RECONFIGURE: Failover._reconfigure,
    FailoverStep.REPLACE: Failover._replace,
    FailoverStep.DONE: Failover._done,
}


def _repoint(status: ReplicationGroupStatus, old: str, new: str) -> None:
    status.primary = new
    if status.reader_on in (old, new):
        status.reader_on = None


def _test_done(status: ReplicationGroupStatus, seq: int) -> None:
    status.test_failover_done = max(status.test_failover_done, seq)


def _primary_fine(status: ReplicationGroupStatus) -> None:
    status.failover_aborted = None
    status.failover_held_until = None
