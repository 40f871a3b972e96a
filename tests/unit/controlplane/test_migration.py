"""Online migration (StartMigration, TestMigration, CompleteMigration) on the fake runtime and
fake clock; the source is a stand-in for a self-managed Redis (its INFO as the reconciler reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.reconciler.replication_groups import migration as reconciler_migration
from engine import RuntimeError_
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

NODE = "123456789012-us-east-1-{}-0001"
BASIC = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro"}
SOURCE = {"Address": "127.0.230.1", "Port": 6390}


class Source:
    """The self-managed Redis as the reconciler sees it: INFO fields, or an error."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {"redis_version": "7.0.15", "master_repl_offset": "0", "cluster_enabled": "0"}
        self.error: str | None = None
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, timeout: float = 2.0) -> dict[str, str]:
        self.asked.append((host, port))
        if self.error is not None:
            raise RuntimeError_(self.error)
        return dict(self.fields)


@pytest.fixture
def source(monkeypatch: pytest.MonkeyPatch) -> Iterator[Source]:
    s = Source()
    monkeypatch.setattr(reconciler_migration, "external_redis_info", s)
    yield s


def _make(world: World, **extra: Any) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2, AutomaticFailoverEnabled=True,
               MultiAZEnabled=True, **BASIC, **extra)
    world.settle_until(lambda: _status(world) == "available")


def _status(world: World) -> str:
    return str(world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]["Status"])


def _events(world: World) -> list[str]:
    return [e["Message"] for e in world.call("DescribeEvents", SourceType="replication-group",
                                             SourceIdentifier="rg")["Events"]]


def _error(world: World, operation: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    return err.value


def _synced(world: World) -> None:
    world.settle_until(lambda: "Migration data sync established for rg" in _events(world))


def _primary_upstream(world: World) -> tuple[str, int] | None:
    return world.runtime.primary_of.get(NODE.format("rg-001"))


def test_start_makes_the_primary_a_replica_of_the_source_and_the_group_migrating(world: World, source: Source) -> None:
    _make(world)
    answer = world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    assert answer["ReplicationGroup"]["Status"] == "migrating"
    _synced(world)
    assert _status(world) == "migrating"
    assert _primary_upstream(world) == ("127.0.230.1", 6390)
    replica_upstream = world.runtime.primary_of[NODE.format("rg-002")]
    assert replica_upstream is not None and replica_upstream[0] != "127.0.230.1"  # still from the primary
    events = _events(world)
    assert "Migration started for rg: its primary replicates from 127.0.230.1:6390" in events
    assert "Migration data sync established for rg" in events
    # Nothing else may change the group while it migrates.
    assert _error(world, "ModifyReplicationGroup", ReplicationGroupId="rg", SnapshotRetentionLimit=1,
                  ApplyImmediately=True).code == "InvalidReplicationGroupState"
    assert _error(world, "StartMigration", ReplicationGroupId="rg",
                  CustomerNodeEndpointList=[SOURCE]).code == "ReplicationGroupAlreadyUnderMigrationFault"


def test_complete_waits_for_the_sync_then_promotes(world: World, source: Source) -> None:
    _make(world)
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    _synced(world)
    source.fields["master_repl_offset"] = "500"
    world.runtime.set_offset(NODE.format("rg-001"), 200)  # 300 bytes behind the source
    assert world.call("CompleteMigration", ReplicationGroupId="rg")["ReplicationGroup"]["Status"] == "migrating"
    world.settle()
    world.clock.advance(reconciler_migration.COMPLETE_WAIT.total_seconds() + 1)
    world.settle_until(lambda: any(e.startswith("Complete Migration failed") for e in _events(world)))
    assert any(e.startswith("Complete Migration failed for rg: data not in sync (the primary is 300 bytes behind")
               for e in _events(world))
    assert _status(world) == "migrating" and _primary_upstream(world) == ("127.0.230.1", 6390)
    world.runtime.set_offset(NODE.format("rg-001"), 500)
    world.call("CompleteMigration", ReplicationGroupId="rg")
    world.settle_until(lambda: _status(world) == "available")
    assert _status(world) == "available"
    assert _primary_upstream(world) is None
    assert world.runtime.primary_of[NODE.format("rg-002")] is not None  # the replica stays with the primary
    assert "Complete Migration successful for rg" in _events(world)
    assert _error(world, "CompleteMigration", ReplicationGroupId="rg").code == "ReplicationGroupNotUnderMigrationFault"


def test_force_cuts_over_without_the_sync(world: World, source: Source) -> None:
    _make(world)
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    world.settle()
    source.fields["master_repl_offset"] = "900"
    world.runtime.set_offset(NODE.format("rg-001"), 1)
    world.call("CompleteMigration", ReplicationGroupId="rg", Force=True)
    world.settle_until(lambda: _status(world) == "available")
    assert _status(world) == "available" and _primary_upstream(world) is None


def test_auto_cutover_completes_once_in_sync(world: World, source: Source) -> None:
    _make(world)
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE], AutoCutover=True)
    world.settle_until(lambda: _status(world) == "available")
    assert _primary_upstream(world) is None
    assert "Complete Migration successful for rg" in _events(world)


@pytest.mark.parametrize(("error", "fields", "reason"), [
    ("NOAUTH Authentication required.", None, "requires AUTH"),
    ("[Errno 111] Connection refused", None, "cannot connect to the source 127.0.230.1:6390"),
    (None, {"redis_version": "7.0.15", "cluster_enabled": "1"}, "has cluster mode enabled"),
])
def test_a_source_that_cannot_be_migrated_ends_the_migration(world: World, source: Source, error: str | None,
                                                              fields: dict[str, str] | None, reason: str) -> None:
    _make(world)
    source.error = error
    if fields is not None:
        source.fields = fields
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    world.settle()
    assert _status(world) == "available" and _primary_upstream(world) is None
    assert any(e.startswith("Migration failed for rg: ") and reason in e for e in _events(world))
    source.error, source.fields = None, {"redis_version": "7.0.15", "master_repl_offset": "0"}
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])  # may start again
    world.settle()
    assert _status(world) == "migrating"


def test_test_migration_reports_an_event_and_changes_nothing(world: World, source: Source) -> None:
    _make(world)
    answer = world.call("TestMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    assert answer["ReplicationGroup"]["Status"] == "available"
    world.settle()
    assert "Test Migration successful for rg" in _events(world)
    source.error = "NOAUTH Authentication required."
    world.call("TestMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    world.settle()
    assert any(e.startswith("Test Migration failed for rg: ") and "AUTH" in e for e in _events(world))
    assert _status(world) == "available" and _primary_upstream(world) is None


def test_a_new_primary_after_a_failover_replicates_from_the_source(world: World, source: Source) -> None:
    _make(world)
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    world.settle()
    world.runtime.crash(NODE.format("rg-001"))
    world.settle_until(lambda: world.runtime.primary_of.get(NODE.format("rg-002")) == ("127.0.230.1", 6390))
    assert _status(world) in ("migrating", "modifying")


def test_the_migration_survives_a_control_plane_restart(world: World, source: Source) -> None:
    _make(world)
    world.call("StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    world.settle()
    world = world.restart()
    world.settle()
    assert _status(world) == "migrating" and _primary_upstream(world) == ("127.0.230.1", 6390)
    world.call("CompleteMigration", ReplicationGroupId="rg")
    world.settle_until(lambda: _status(world) == "available")
    assert _status(world) == "available" and _primary_upstream(world) is None
    world.service.store.close()


def test_requests_refused_as_aws_refuses_them(world: World, source: Source) -> None:
    _make(world)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("StartMigration", {"ReplicationGroupId": "nope", "CustomerNodeEndpointList": [SOURCE]},
         "ReplicationGroupNotFoundFault"),
        ("StartMigration", {"ServerlessCacheName": "sc", "CustomerNodeEndpointList": [SOURCE]},
         "ServerlessCacheNotFoundFault"),
        ("StartMigration", {"ReplicationGroupId": "rg"}, "MissingParameter"),
        ("StartMigration", {"CustomerNodeEndpointList": [SOURCE]}, "MissingParameter"),
        ("StartMigration", {"ReplicationGroupId": "rg", "CustomerNodeEndpointList": [SOURCE, SOURCE]},
         "InvalidParameterValue"),
        ("StartMigration", {"ReplicationGroupId": "rg", "CustomerNodeEndpointList": [{"Address": "", "Port": 1}]},
         "InvalidParameterValue"),
        ("StartMigration", {"ReplicationGroupId": "rg", "CustomerNodeEndpointList": [SOURCE],
                            "ClearTargetCacheData": True}, "InvalidParameterCombination"),
        ("TestMigration", {"ReplicationGroupId": "nope", "CustomerNodeEndpointList": [SOURCE]},
         "ReplicationGroupNotFoundFault"),
        ("CompleteMigration", {"ReplicationGroupId": "rg"}, "ReplicationGroupNotUnderMigrationFault"),
        ("CompleteMigration", {"ServerlessCacheName": "sc"}, "ServerlessCacheNotFoundFault"),
        ("PrepareMigration", {"ServerlessCacheName": "sc", "CustomerNodeEndpointList": [SOURCE]},
         "ServerlessCacheNotFoundFault"),
        ("StopMigration", {"ServerlessCacheName": "sc"}, "ServerlessCacheNotFoundFault"),
    ]
    for operation, params, code in cases:
        assert _error(world, operation, **params).code == code, (operation, params)
    # The source may not be one of this service's own nodes.
    node = world.call("DescribeCacheClusters", CacheClusterId="rg-002", ShowCacheNodeInfo=True)[
        "CacheClusters"][0]["CacheNodes"][0]["Endpoint"]
    own = {"Address": node["Address"], "Port": node["Port"]}
    err = _error(world, "StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[own])
    assert err.code == "InvalidParameterValue" and "not between ElastiCache clusters" in err.message
    assert _status(world) == "available"


def test_prerequisites_of_the_target(world: World, source: Source) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", NumCacheClusters=2, AutomaticFailoverEnabled=True,
               **BASIC)  # no Multi-AZ
    world.settle_until(lambda: _status(world) == "available")
    err = _error(world, "StartMigration", ReplicationGroupId="rg", CustomerNodeEndpointList=[SOURCE])
    assert err.code == "InvalidParameterCombination" and "Multi-AZ" in err.message
