"""Online migration (state/migration.py): the group's primary replicates from a self-managed
Redis, then is cut over to be a primary again.

- TestMigration: the source is checked (it answers without a password, it is not a cluster) and
  the result is an event; nothing changes on the nodes.
- StartMigration: the same checks, then the primary is told `REPLICAOF <source>`; members.py
  keeps it so (a restarted or newly promoted primary replicates from the source too, through
  `state.migration.upstream`), and the replicas go on replicating from the primary. A check that
  fails ends the migration at once with an event; the group stays as it was.
- CompleteMigration: the cut-over waits until the primary has everything the source has sent
  (its replication offset reaches the source's: stop writing to the source first), at most
  COMPLETE_WAIT; then `REPLICAOF NO ONE`. Not in sync by then: an event, and the group goes on
  migrating (AWS: "the ElastiCache primary node continues to replicate"); Force cuts over at
  once. AutoCutover cuts over as soon as the data is in sync.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.nodes import PROBE_TIMEOUT
from controlplane.reconciler.replication_groups.context import RG, GroupContext
from controlplane.state.migration import MigrationSource, MigrationSpec, MigrationStatus, migrating
from controlplane.state.records import ReplicationGroup
from engine import RuntimeError_, external_redis_info

COMPLETE_WAIT = timedelta(seconds=10)  # a cut-over waits this long for the primary to catch up
SYNC_POLL = 0.2  # seconds between looks while the sync or a cut-over is awaited


class GroupMigration:
    def __init__(self, ctx: GroupContext) -> None:
        self._ctx = ctx

    def converge(self, rg: ReplicationGroup) -> tuple[ReplicationGroup, float | None]:
        """Call with every member running with its role and no failover. Returns the group and,
        while something is awaited, the delay before the next look."""
        rg = self._test(rg)
        spec = rg.spec.migration
        if spec is None or not migrating(spec, rg.status.migration) or rg.status.primary is None:
            return rg, None
        if rg.status.migration.started != spec.seq:
            return self._start(rg, spec), SYNC_POLL
        rg = self._follow(rg)
        status = rg.status.migration
        asked = spec.complete_calls > status.complete_tried or (spec.auto_cutover and status.synced)
        if not asked:
            return rg, None if status.synced else SYNC_POLL
        return self._complete(rg, spec)

    # ---- steps --------------------------------------------------------------------------

    def _test(self, rg: ReplicationGroup) -> ReplicationGroup:
        test = rg.spec.migration_test
        if test is None or test.seq <= rg.status.migration.tested:
            return rg
        problem = self._check(test.source)

        def tested(s: MigrationStatus) -> None:
            s.tested = test.seq
            s.failure = problem

        rg = self._write(rg, tested)
        if problem is None:
            self._emit(rg, f"Test Migration successful for {rg.id}")
        else:
            self._emit(rg, f"Test Migration failed for {rg.id}: {problem}")
        return rg

    def _start(self, rg: ReplicationGroup, spec: MigrationSpec) -> ReplicationGroup:
        problem = self._check(spec.source)
        if problem is None:
            try:
                self._replicate(rg, spec.source)
            except RuntimeError_ as exc:
                raise TemporaryError(f"starting the migration of {rg.id}: {exc}", delay=SYNC_POLL) from exc
        if problem is not None:
            def failed(s: MigrationStatus) -> None:
                s.ended, s.failure = spec.seq, problem

            rg = self._write(rg, failed)
            self._emit(rg, f"Migration failed for {rg.id}: {problem}")
            return rg

        def started(s: MigrationStatus) -> None:
            s.started, s.synced, s.failure, s.complete_since = spec.seq, False, None, None
            s.complete_tried = spec.complete_calls  # calls made before it started are not cut-overs

        rg = self._write(rg, started)
        self._emit(rg, f"Migration started for {rg.id}: its primary replicates from {spec.source.where}")
        return rg

    def _follow(self, rg: ReplicationGroup) -> ReplicationGroup:
        """Notes (once) that the primary's initial sync from the source is done."""
        if rg.status.migration.synced:
            return rg
        details = self._primary_replication(rg)
        if details.get("master_link_status") != "up" or details.get("master_sync_in_progress", "0") != "0":
            return rg
        rg = self._write(rg, lambda s: setattr(s, "synced", True))
        self._emit(rg, f"Migration data sync established for {rg.id}")
        return rg

    def _complete(self, rg: ReplicationGroup, spec: MigrationSpec) -> tuple[ReplicationGroup, float | None]:
        behind = None if spec.force else self._behind(rg, spec.source)
        if behind is not None:
            now = self._ctx.clock.now()
            since = rg.status.migration.complete_since
            if since is None:
                return self._write(rg, lambda s: setattr(s, "complete_since", now)), SYNC_POLL
            if now - since < COMPLETE_WAIT:
                return rg, SYNC_POLL
            if spec.complete_calls <= rg.status.migration.complete_tried:
                return rg, SYNC_POLL  # AutoCutover: tried again until the data is in sync

            def gave_up(s: MigrationStatus) -> None:
                s.complete_tried, s.complete_since, s.failure = spec.complete_calls, None, behind

            rg = self._write(rg, gave_up)
            self._emit(rg, f"Complete Migration failed for {rg.id}: {behind}. The primary goes on replicating from "
                           "the source: stop writes to the source and call CompleteMigration again, or use Force.")
            return rg, None
        try:
            self._replicate(rg, None)
        except RuntimeError_ as exc:
            raise TemporaryError(f"completing the migration of {rg.id}: {exc}", delay=SYNC_POLL) from exc

        def completed(s: MigrationStatus) -> None:
            s.ended, s.complete_tried, s.complete_since = spec.seq, spec.complete_calls, None
            s.synced, s.failure = False, None

        rg = self._write(rg, completed)
        self._emit(rg, f"Complete Migration successful for {rg.id}")
        return rg, None

    # ---- the nodes ----------------------------------------------------------------------

    def _check(self, source: MigrationSource) -> str | None:
        """Why the source cannot be migrated from (None: it can)."""
        try:
            fields = external_redis_info(source.address, source.port, PROBE_TIMEOUT)
        except RuntimeError_ as exc:
            if "NOAUTH" in str(exc):
                return f"the source {source.where} requires AUTH; online migration needs a source without AUTH"
            return f"cannot connect to the source {source.where} ({exc})"
        if fields.get("cluster_enabled") == "1":
            return (f"the source {source.where} has cluster mode enabled and the target has cluster mode "
                    "disabled")
        if "redis_version" not in fields:
            return f"the source {source.where} does not answer as Redis OSS"
        return None

    def _behind(self, rg: ReplicationGroup, source: MigrationSource) -> str | None:
        """Why the primary is not in sync with the source (None: it has all the source sent)."""
        details = self._primary_replication(rg)
        if details.get("master_link_status") != "up":
            return "the primary's link to the source is down"
        try:
            theirs = int(external_redis_info(source.address, source.port, PROBE_TIMEOUT).get("master_repl_offset", "0"))
            ours = int(details.get("slave_repl_offset", "-1"))
        except (RuntimeError_, ValueError) as exc:
            return f"the source's replication offset cannot be read ({exc})"
        if ours < theirs:
            return f"data not in sync (the primary is {theirs - ours} bytes behind the source)"
        return None

    def _primary_replication(self, rg: ReplicationGroup) -> dict[str, str]:
        assert rg.status.primary is not None
        result = self._ctx.probe(rg, rg.status.primary)
        return dict(result.details) if result.ok and result.role == "slave" else {}

    def _replicate(self, rg: ReplicationGroup, source: MigrationSource | None) -> None:
        assert rg.status.primary is not None
        to = None if source is None else (source.address, source.port)
        self._ctx.infra.runtime.replicate(self._ctx.name(rg, rg.status.primary), to)

    def _write(self, rg: ReplicationGroup, change: Callable[[MigrationStatus], object]) -> ReplicationGroup:
        return self._ctx.write(rg, lambda s: change(s.migration))

    def _emit(self, rg: ReplicationGroup, message: str) -> None:
        self._ctx.emit(RG, rg.id, rg, message)
