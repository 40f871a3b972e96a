"""Online migration of a self-managed Redis into a replication group (StartMigration,
TestMigration, CompleteMigration).

The handlers record what was asked in the group's spec (`MigrationSpec`, `MigrationTest`); the
reconciler (reconciler/replication_groups/migration.py) makes the group's primary a replica of
the source, follows the sync, and cuts over, writing `MigrationStatus`. A migration is one
`seq`: it is running while the spec names a seq the status has not ended.

While it runs the group's primary replicates from the source (AWS: "the ElastiCache primary node
configures itself to become a replica of your Redis instance"), and the group's replicas go on
replicating from the primary: the whole group reads the source's data and refuses writes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class MigrationSource(BaseModel):
    """A customer's node (CustomerNodeEndpoint): where the data comes from."""

    address: str
    port: int

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


class MigrationSpec(BaseModel):
    """StartMigration (and CompleteMigration's calls on it)."""

    seq: int
    source: MigrationSource
    auto_cutover: bool = False
    complete_calls: int = 0  # each CompleteMigration call is one cut-over attempt
    force: bool = False  # the last CompleteMigration call had Force


class MigrationTest(BaseModel):
    """TestMigration: a check of the source, reported as an event."""

    seq: int
    source: MigrationSource


class MigrationStatus(BaseModel):
    """What the reconciler has done about the spec's migration and test."""

    started: int = 0  # the migration seq the primary was told to replicate from the source for
    ended: int = 0  # the last migration seq that ended: completed, or failed its checks
    synced: bool = False  # the primary's link to the source came up (the initial sync is done)
    complete_tried: int = 0  # the last CompleteMigration call acted on
    complete_since: datetime | None = None  # when the current attempt began waiting for the sync
    tested: int = 0  # the last TestMigration seq reported
    failure: str | None = Field(default=None)  # why the last migration or test failed


def migrating(spec: MigrationSpec | None, status: MigrationStatus) -> bool:
    """The group is under migration: one was asked and has not ended."""
    return spec is not None and spec.seq > status.ended


def upstream(spec: MigrationSpec | None, status: MigrationStatus) -> MigrationSource | None:
    """Where the group's primary replicates from: the source of a migration the reconciler has
    started and not yet ended; None: the primary is a primary."""
    if spec is not None and migrating(spec, status) and status.started == spec.seq:
        return spec.source
    return None
