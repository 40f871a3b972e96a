"""Failover of one shard of a cluster-mode group: the failover state machine of failover.py (its
persisted steps, timeouts, events and observer), with the cluster's own promotion. An automatic
failover fences the dead or frozen primary and runs CLUSTER FAILOVER TAKEOVER on the shard's best
replica (it takes the slots at once, with a new config epoch, no vote needed); TestFailover runs
a coordinated CLUSTER FAILOVER (the primary is alive: no acknowledged write is lost). The other
replicas of the shard follow the new primary by themselves (the cluster moves them with the
slots); the old primary is restarted by the group's next pass and rejoins as a replica. Other
shards are not touched. One shard at a time per group; a shard whose primary is down meanwhile
is held (not restarted in place with no data) until its turn."""

from __future__ import annotations

import logging
from functools import partial

from controlplane.reconciler.replication_groups.context import CC, RG
from controlplane.reconciler.replication_groups.failover import Failover
from controlplane.reconciler.replication_groups.members import offset
from controlplane.state.records import (
    CacheCluster,
    FailoverState,
    FailoverStep,
    ReplicationGroup,
    ReplicationGroupStatus,
)
from engine import NodeState, ProbeResult, RuntimeError_

log = logging.getLogger("elasticache_local.failover")


class ClusterFailover(Failover):
    def run(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        """Begin a failover that is due, and carry the current one as far as it goes now."""
        if rg.status.failover is None:
            rg = self._check_shards(rg, members)
        return self.advance(rg, "")  # the base class's loop (timeouts), with these steps (_next)

    def _next(self, rg: ReplicationGroup, fo: FailoverState, version: str) -> ReplicationGroup:
        return self._step(rg, fo, self._ctx.members(rg))

    def holds(self, rg: ReplicationGroup, member_id: str) -> bool:
        """Whether a dead member must not be restarted yet: a shard primary that fails over (or
        will, once the failover before it ends). Restarted now, it would serve its slots empty."""
        fo = rg.status.failover
        if fo is not None and fo.old_primary == member_id:
            return True
        shard = next((g for g, p in rg.status.shard_primaries.items() if p == member_id), None)
        if shard is None or not rg.spec.automatic_failover or not rg.status.cluster_formed:
            return False
        return bool(self._eligible(rg, self._ctx.members(rg), shard, member_id, []))

    # ---- starting ---------------------------------------------------------------------------

    def _check_shards(self, rg: ReplicationGroup, members: list[CacheCluster]) -> ReplicationGroup:
        ctx = self._ctx
        request = rg.spec.test_failover
        if request is not None and request.seq > rg.status.test_failover_done:
            shard = request.node_group
            ctx.emit(RG, rg.id, rg, f"Test Failover API called for node group {shard}")
            primary = rg.status.shard_primaries.get(shard)
            if primary is None or not self._eligible(rg, members, shard, primary, []):
                ctx.emit(RG, rg.id, rg, f"Test failover of node group {shard} aborted: no healthy replica can be "
                                        "promoted")
                return ctx.write(rg, partial(_test_done, seq=request.seq))
            return self._start(rg, shard, primary, "test", request.seq)
        if not rg.status.cluster_formed or not rg.spec.automatic_failover:
            return rg
        for shard, primary in sorted(rg.status.shard_primaries.items()):
            name = ctx.name(rg, primary)
            info = ctx.infra.runtime.inspect(name)
            if info is not None and info.state != NodeState.EXITED and not ctx.health.is_down(name):
                continue
            if self._eligible(rg, members, shard, primary, []):
                log.warning("%s: primary %s of node group %s is down; failing over", rg.id, primary, shard)
                return self._start(rg, shard, primary, "automatic", 0)
        return rg

    def _start(self, rg: ReplicationGroup, shard: str, primary: str, reason: str, seq: int) -> ReplicationGroup:
        now = self._ctx.clock.now()
        state = FailoverState(step=FailoverStep.DETECTED, reason=reason, old_primary=primary, started_at=now,
                              entered_at=now, test_seq=seq, node_group=shard)
        rg = self._ctx.write(rg, lambda s: setattr(s, "failover", state))
        self._tell(rg, state, None, "")
        return rg

    def _eligible(self, rg: ReplicationGroup, members: list[CacheCluster], shard: str, old: str,
                  excluded: list[str]) -> list[tuple[CacheCluster, ProbeResult]]:
        """The shard's replicas that answer as replicas."""
        out = []
        for m in members:
            if m.spec.node_group_id != shard or m.id == old or m.id in excluded or not m.status.nodes:
                continue
            result = self._ctx.probe(rg, m.id)
            if result.ok and result.role == "slave":
                out.append((m, result))
        return out

    # ---- the steps --------------------------------------------------------------------------

    def _step(self, rg: ReplicationGroup, fo: FailoverState, members: list[CacheCluster]) -> ReplicationGroup:
        ctx, shard = self._ctx, fo.node_group or ""
        if fo.step == FailoverStep.DETECTED:
            return self._go(rg, FailoverStep.FENCE)
        if fo.step == FailoverStep.FENCE:
            if fo.reason == "automatic":  # surely dead: it takes no more writes
                ctx.infra.runtime.kill(ctx.name(rg, fo.old_primary))
            return self._go(rg, FailoverStep.SELECT)
        if fo.step == FailoverStep.SELECT:
            candidates = self._eligible(rg, members, shard, fo.old_primary, fo.excluded)
            if not candidates:
                return self._end(rg, fo, f"Failover of primary node {fo.old_primary} aborted: no healthy replica "
                                         "can be promoted; restarting the primary")
            best = max(candidates, key=lambda c: (offset(c[1]), [-ord(ch) for ch in c[0].id]))[0]
            return self._go(rg, FailoverStep.PROMOTE, candidate=best.id)
        assert fo.candidate is not None
        candidate = ctx.name(rg, fo.candidate)
        if fo.step == FailoverStep.PROMOTE:
            try:
                ctx.infra.runtime.cluster_failover(candidate, "TAKEOVER" if fo.reason == "automatic" else "")
            except RuntimeError_ as exc:
                return self._go(rg, FailoverStep.SELECT, exclude=fo.candidate, note=f"promotion refused: {exc}")
            return self._go(rg, FailoverStep.WAIT_PROMOTION)
        if fo.step == FailoverStep.WAIT_PROMOTION:  # as without cluster mode: INFO says role:master
            return self._wait_promotion(rg, fo, members, "")
        if fo.step == FailoverStep.REPOINT:
            rg = self._go(rg, FailoverStep.DONE, change=partial(_new_primary, shard=shard, new=fo.candidate))
            text = f"Failover from primary node {fo.old_primary} to replica node {fo.candidate} completed"
            ctx.emit(CC, fo.old_primary, rg, text)
            ctx.emit(RG, rg.id, rg, text)
            return rg
        return self._end(rg, fo, "")  # DONE; the old primary is recovered by the group's pass


def _new_primary(status: ReplicationGroupStatus, shard: str, new: str) -> None:
    status.shard_primaries[shard] = new


def _test_done(status: ReplicationGroupStatus, seq: int) -> None:
    """A TestFailover request that could not run is answered (its event says why)."""
    if seq > status.test_failover_done:
        status.test_failover_done = seq
