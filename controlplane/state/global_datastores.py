"""Global datastores (global replication groups): one primary replication group in one region and up
to two secondary groups in others, which replicate from it for real and are read-only.

A global datastore belongs to the account, not to a region: it is stored with region "" (its ARN
has no region either, as AWS writes it) and found from every region. Its id is the suffix the
user gave behind the prefix AWS gives the primary's region (`ldgnf-` in us-east-1).

Which group is the primary is status: the handlers record a FailoverGlobalReplicationGroup as a
request (`spec.failover`) and the reconciler moves the role (a planned switchover between the two
groups' primaries, engine/runtime hand_over: writes pause until the new primary has them all),
then writes `status.primary`. Every member group's reconciler reads `primary_upstream`: a
secondary's primary replicates from the primary group's primary endpoint."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, Field

from controlplane.catalog import version_key
from controlplane.state.migration import upstream as migration_upstream
from controlplane.state.records import Record, ReplicationGroup, ResourceKey

if TYPE_CHECKING:  # the store imports every record kind, this one too
    from controlplane.state.store import Store

GLOBAL_REGION = ""  # the region a global datastore is stored under
MAX_SECONDARIES = 2
# The prefix AWS puts before the suffix, per region of the primary (AWS names only these in its
# examples and tools); other regions get five letters derived from the region's name.
PREFIXES = {"us-east-1": "ldgnf", "us-east-2": "fpkhr", "us-west-1": "virxk", "us-west-2": "sgaui"}

Role = Literal["primary", "secondary"]


def prefix(region: str) -> str:
    known = PREFIXES.get(region)
    if known is not None:
        return known
    digest = hashlib.sha256(region.encode()).digest()
    return "".join(chr(ord("a") + b % 26) for b in digest[:5])


class GlobalMember(BaseModel):
    replication_group_id: str
    region: str

    def key(self, account: str) -> ResourceKey:
        return ResourceKey(ReplicationGroup.KIND, account, self.region, self.replication_group_id)

    def same(self, rg: ReplicationGroup) -> bool:
        return (self.replication_group_id, self.region) == (rg.id, rg.region)


class GlobalFailover(BaseModel):
    seq: int
    to: GlobalMember


class GlobalSpec(BaseModel):
    description: str = ""
    primary: GlobalMember  # the group it was created from (status.primary says which one is now)
    secondaries: list[GlobalMember] = Field(default_factory=list)  # joined, not yet disassociated
    failover: GlobalFailover | None = None


class GlobalStatus(BaseModel):
    primary: GlobalMember | None = None  # None: not yet taken over by the reconciler
    failover_done: int = 0
    associated: list[str] = Field(default_factory=list)  # "region/id" of secondaries seen replicating


class GlobalReplicationGroup(Record):
    KIND: ClassVar[str] = "global-replication-group"

    spec: GlobalSpec
    status: GlobalStatus = Field(default_factory=GlobalStatus)

    def current_primary(self) -> GlobalMember:
        return self.status.primary or self.spec.primary

    def members(self) -> list[GlobalMember]:
        """Every member group, the current primary first."""
        primary = self.current_primary()
        everyone = [self.spec.primary, *self.spec.secondaries]
        return [primary, *(m for m in everyone if m != primary)]

    def role_of(self, rg: ReplicationGroup) -> Role | None:
        if self.current_primary().same(rg):
            return "primary"
        return "secondary" if any(m.same(rg) for m in self.members()) else None

    def failing_over(self) -> bool:
        return self.spec.failover is not None and self.spec.failover.seq > self.status.failover_done

    def member_status(self, member: GlobalMember) -> str:
        if member == self.current_primary():
            return "associated"
        return "associated" if f"{member.region}/{member.replication_group_id}" in self.status.associated \
            else "associating"

    def api_status(self) -> str:
        if self.status.primary is None:
            return "creating"
        if self.failing_over() or any(self.member_status(m) != "associated" for m in self.members()):
            return "modifying"
        return "available" if len(self.members()) > 1 else "primary-only"


def find(store: Store, account: str, global_id: str) -> GlobalReplicationGroup | None:
    return store.get(ResourceKey(GlobalReplicationGroup.KIND, account, GLOBAL_REGION, global_id),
                     GlobalReplicationGroup)


def of_group(store: Store, rg: ReplicationGroup) -> GlobalReplicationGroup | None:
    """The global datastore the group is a member of (None: none)."""
    if rg.spec.global_group is None:
        return None
    g = find(store, rg.account, rg.spec.global_group)
    return g if g is not None and g.role_of(rg) is not None else None


def primary_upstream(store: Store, rg: ReplicationGroup) -> tuple[str, int] | None:
    """Where the group's primary node replicates from: an online migration's source, or the
    primary endpoint of its global datastore's primary group when it is a secondary; None: it is
    a primary."""
    source = migration_upstream(rg.spec.migration, rg.status.migration)
    if source is not None:
        return source.address, source.port
    g = of_group(store, rg)
    if g is None or g.role_of(rg) != "secondary":
        return None
    primary = store.get(g.current_primary().key(rg.account), ReplicationGroup)
    if primary is None or primary.status.primary_host is None or primary.status.primary_port is None:
        return None
    return primary.status.primary_host, primary.status.primary_port


def role_held(store: Store, rg: ReplicationGroup) -> bool:
    """Nobody promotes or demotes the group's primary node now: its global datastore's failover
    is moving the role, or it is a secondary whose primary group has no endpoint yet."""
    g = of_group(store, rg)
    if g is None:
        return False
    return g.failing_over() or (g.role_of(rg) == "secondary" and primary_upstream(store, rg) is None)


def upgrade_held(store: Store, rg: ReplicationGroup, version: str) -> bool:
    """A global datastore's primary group waits with an engine upgrade until every secondary runs
    the new version on all its nodes (AWS upgrades the secondaries first: a replica may be newer
    than its primary, not older)."""
    from controlplane.state.members import members_of  # here: the store imports this module

    g = of_group(store, rg)
    if g is None or g.role_of(rg) != "primary":
        return False
    for member in g.members()[1:]:
        secondary = store.get(member.key(rg.account), ReplicationGroup)
        if secondary is None:
            continue
        for cluster in members_of(store, secondary):
            for node in cluster.status.nodes:
                if node.version is not None and version_key(node.version) < version_key(version):
                    return True
    return False
