"""Service updates and their update actions.

A service update is a patch release of an engine that this machine can run while a cache's
nodes run an older patch of the same major.minor line (7.0.15 installed, 7.0.11 running). The
service publishes it the moment it first sees such a cache, as AWS publishes its updates: the
record is all catalogue facts the control loop observed (status), nobody asks for it (no spec).

An update action is one update for one cache (a standalone cache cluster or a replication
group). Spec is what the user asked (BatchApplyUpdateAction, BatchStopUpdateAction); status is
what the control loop observed of the cache's nodes and did (the maintenance window's automatic
application)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from controlplane.catalog import version_key
from controlplane.state.records import CacheCluster, Record, ReplicationGroup, ResourceKey

if TYPE_CHECKING:  # the store imports this module (through kinds) to read records back
    from controlplane.state.store import Store

# AWS publishes security updates about a month before their recommended apply-by date and keeps
# them available for a while after; these are the local equivalents.
RECOMMENDED_APPLY_WITHIN = timedelta(days=30)
AVAILABLE_FOR = timedelta(days=365)
SEVERITY = "important"
UPDATE_TYPE = "security-update"  # the model's only ServiceUpdateType

Target = Literal["cluster", "group"]


def line_of(version: str) -> str:
    """A version's major.minor line: "7.0.15" -> "7.0"."""
    return ".".join(version.split(".")[:2])


def newer_patch(candidate: str, running: str) -> bool:
    """`candidate` is a later patch release of the line `running` belongs to."""
    return line_of(candidate) == line_of(running) and version_key(candidate) > version_key(running)


def outdated(running: str, wanted: str, updating: bool) -> bool:
    """Whether a running node must restart to run `wanted`: always for another line (an engine
    version change); for an older patch only while a service update is applied, so a patch
    release installed on this machine never restarts a node by itself; never for a newer patch
    (nodes a stopped update already moved stay moved)."""
    if running == wanted:
        return False
    if line_of(running) != line_of(wanted):
        return True
    return updating and version_key(running) < version_key(wanted)


def pick_version(chosen: str, installed: Sequence[str], updating_to: str | None,
                 pinned: str | None) -> tuple[str, bool]:
    """The version a cache's nodes run, and whether a service update is being applied: the
    update's while one is; else the patch the cache already runs while it is installed; else
    `chosen` (the newest installed patch of the line asked for)."""
    if updating_to is not None and line_of(updating_to) == line_of(chosen) and updating_to in installed:
        return updating_to, True
    if pinned is not None and pinned in installed and line_of(pinned) == line_of(chosen):
        return pinned, False
    return chosen, False


def pin(store: Store, cache: CacheCluster | ReplicationGroup, chosen: str,
        installed: Sequence[str]) -> tuple[str, bool]:
    """pick_version for a cache: what it runs is its recorded version (a group's: its primary's)."""
    if isinstance(cache, ReplicationGroup):
        primary = store.get(ResourceKey(CacheCluster.KIND, cache.account, cache.region, cache.status.primary or ""),
                            CacheCluster)
        pinned = primary.status.engine_version if primary is not None else None
    else:
        pinned = cache.status.engine_version
    return pick_version(chosen, installed, active_version(store, cache), pinned)


def update_name(engine: str, version: str) -> str:
    return f"elasticache-{engine}-{version.replace('.', '-')}-update"


class ServiceUpdateStatus(BaseModel):
    engine: str
    engine_version: str  # the patch release the update moves nodes to
    released_at: datetime
    recommended_apply_by: datetime
    ends_at: datetime
    auto_update: bool = True  # AutoUpdateAfterRecommendedApplyByDate
    severity: str = SEVERITY
    description: str


class ServiceUpdate(Record):
    KIND: ClassVar[str] = "service-update"

    status: ServiceUpdateStatus

    def api_status(self, now: datetime) -> str:
        return "expired" if now > self.status.ends_at else "available"


class UpdateActionSpec(BaseModel):
    """The user's requests. An application is active while apply_seq (or the system's auto_seq
    in status) is above stop_seq: a stop covers every application before it."""

    apply_seq: int = 0
    applied_at: datetime | None = None
    stop_seq: int = 0
    stopped_at: datetime | None = None


class NodeProgress(BaseModel):
    """One node's update as the control loop saw it; keyed by "<cache cluster id>/<node id>"."""

    status: str  # NodeUpdateStatus
    modified_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class UpdateActionStatus(BaseModel):
    # None until the control loop first looks: the API then shows "not-applied".
    state: str | None = None
    modified_at: datetime | None = None
    # The maintenance window applied it after its recommended apply-by date (the request it
    # counts as: see UpdateActionSpec).
    auto_seq: int = 0
    auto_applied_at: datetime | None = None
    completed_at: datetime | None = None
    nodes_total: int = 0
    nodes_updated: int = 0
    nodes: dict[str, NodeProgress] = Field(default_factory=dict)
    announced: bool = False  # the "available" event was written


class UpdateAction(Record):
    KIND: ClassVar[str] = "update-action"

    update: str  # the service update's name
    target: Target
    target_id: str
    spec: UpdateActionSpec = Field(default_factory=UpdateActionSpec)
    status: UpdateActionStatus = Field(default_factory=UpdateActionStatus)

    def requested_seq(self) -> int:
        return max(self.spec.apply_seq, self.status.auto_seq)

    def active(self) -> bool:
        """An application is asked for and not stopped, and not finished."""
        return self.requested_seq() > self.spec.stop_seq and self.status.state != "complete"

    def stopped(self) -> bool:
        return self.spec.stop_seq > 0 and self.spec.stop_seq >= self.requested_seq()

    def api_status(self) -> str:
        return self.status.state or "not-applied"


def action_id(update: str, target: Target, target_id: str) -> str:
    return f"{update}/{target}/{target_id}"


def actions_for(store: Store, cache: CacheCluster | ReplicationGroup) -> list[UpdateAction]:
    target: Target = "group" if isinstance(cache, ReplicationGroup) else "cluster"
    return [a for a in store.records(UpdateAction, cache.account, cache.region)
            if a.target == target and a.target_id == cache.id]


def active_version(store: Store, cache: CacheCluster | ReplicationGroup) -> str | None:
    """The patch release an update being applied moves this cache's nodes to (the newest, if
    several are applied at once), or None."""
    versions = []
    for action in actions_for(store, cache):
        if not action.active():
            continue
        update = store.get(ResourceKey(ServiceUpdate.KIND, cache.account, cache.region, action.update), ServiceUpdate)
        if update is not None:
            versions.append(update.status.engine_version)
    return max(versions, key=version_key) if versions else None
