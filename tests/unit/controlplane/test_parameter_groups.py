"""Cache parameter groups (fake runtime): every operation with AWS's errors, the families'
catalogues, and a cache's nodes running with its group: live changes for `immediate` parameters,
`pending-reboot` for the others until a reboot, kept on nodes started by a failover."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.state.parameters import FAMILIES
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World
from tests.unit.controlplane.test_snapshots import settle

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}
ARN = "arn:aws:elasticache:us-east-1:123456789012:parametergroup:{}"


def _fails(world: World, code: str, operation: str, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        world.call(operation, **params)
    assert err.value.code == code, err.value
    return err.value.message


def _create(world: World, name: str = "pg", family: str = "redis7", **extra: Any) -> dict[str, Any]:
    return world.call("CreateCacheParameterGroup", CacheParameterGroupName=name, CacheParameterGroupFamily=family,
                      Description="mine", **extra)["CacheParameterGroup"]


def _modify(world: World, name: str, **values: str) -> None:
    world.call("ModifyCacheParameterGroup", CacheParameterGroupName=name,
               ParameterNameValues=[{"ParameterName": k.replace("_", "-"), "ParameterValue": v}
                                    for k, v in values.items()])


def _params(world: World, name: str, **extra: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    marker = None
    while True:
        page = world.call("DescribeCacheParameters", CacheParameterGroupName=name, MaxRecords=20,
                          **({"Marker": marker} if marker else {}), **extra)
        out.update({p["ParameterName"]: p for p in page["Parameters"]})
        marker = page.get("Marker")
        if not marker:
            return out


def _cluster(world: World, cluster_id: str = "c") -> dict[str, Any]:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id, ShowCacheNodeInfo=True)["CacheClusters"][0]


def test_catalogues_follow_aws_families() -> None:
    assert {"redis2.6", "redis2.8", "redis3.2", "redis4.0", "redis5.0", "redis6.x", "redis7", "valkey7", "valkey8",
            "memcached1.4", "memcached1.5", "memcached1.6"} <= set(FAMILIES)
    r7, r5, r26 = FAMILIES["redis7"], FAMILIES["redis5.0"], FAMILIES["redis2.6"]
    assert "hash-max-listpack-entries" in r7 and "hash-max-ziplist-entries" not in r7
    assert "min-replicas-to-write" in r5 and "min-slaves-to-write" not in r5
    assert "allkeys-lfu" in r7["maxmemory-policy"].allowed and "allkeys-lfu" not in r26["maxmemory-policy"].allowed
    assert r7["notify-keyspace-events"].change_type == "immediate"
    assert r7["appendonly"].change_type == "requires-reboot"
    assert not r7["activerehashing"].modifiable and r26["activerehashing"].modifiable
    assert r7["cluster-enabled"].directive is None  # follows cluster mode, never set by a group
    assert FAMILIES["memcached1.6"]["max_item_size"].default == "1048576"


def test_create_describe_modify_reset_delete(world: World) -> None:
    made = _create(world, "My-Params", Tags=[{"Key": "team", "Value": "a"}])
    assert made == {"CacheParameterGroupName": "my-params", "CacheParameterGroupFamily": "redis7",
                    "Description": "mine", "IsGlobal": False, "ARN": ARN.format("my-params")}
    assert world.call("ListTagsForResource", ResourceName=ARN.format("my-params"))["TagList"] == [
        {"Key": "team", "Value": "a"}]
    groups = world.call("DescribeCacheParameterGroups", MaxRecords=100)["CacheParameterGroups"]
    names = [g["CacheParameterGroupName"] for g in groups]
    assert {"default.redis7", "default.redis7.cluster.on", "default.valkey8", "default.memcached1.6",
            "my-params"} <= set(names)
    assert "default.redis2.6.cluster.on" not in names  # cluster mode came with 3.2
    _modify(world, "my-params", maxmemory_policy="allkeys-lru", notify_keyspace_events="Ex", timeout="30")
    params = _params(world, "my-params")
    assert params["maxmemory-policy"]["ParameterValue"] == "allkeys-lru"
    assert params["maxmemory-policy"]["Source"] == "user"
    assert params["timeout"]["Source"] == "user" and params["timeout"]["ParameterValue"] == "30"
    assert params["tcp-keepalive"]["Source"] == "system" and params["tcp-keepalive"]["ParameterValue"] == "300"
    assert params["appendonly"]["ChangeType"] == "requires-reboot" and params["appendonly"]["IsModifiable"]
    assert set(_params(world, "my-params", Source="user")) == {"maxmemory-policy", "notify-keyspace-events", "timeout"}
    world.call("ResetCacheParameterGroup", CacheParameterGroupName="my-params",
               ParameterNameValues=[{"ParameterName": "maxmemory-policy"}])
    assert set(_params(world, "my-params", Source="user")) == {"notify-keyspace-events", "timeout"}
    world.call("ResetCacheParameterGroup", CacheParameterGroupName="my-params", ResetAllParameters=True)
    assert _params(world, "my-params", Source="user") == {}
    world.call("DeleteCacheParameterGroup", CacheParameterGroupName="my-params")
    _fails(world, "CacheParameterGroupNotFound", "DescribeCacheParameters", CacheParameterGroupName="my-params")


def test_engine_defaults_page(world: World) -> None:
    first = world.call("DescribeEngineDefaultParameters", CacheParameterGroupFamily="redis7", MaxRecords=20)
    defaults = first["EngineDefaults"]
    assert defaults["CacheParameterGroupFamily"] == "redis7" and len(defaults["Parameters"]) == 20
    second = world.call("DescribeEngineDefaultParameters", CacheParameterGroupFamily="redis7", MaxRecords=100,
                        Marker=defaults["Marker"])["EngineDefaults"]
    names = [p["ParameterName"] for p in defaults["Parameters"] + second["Parameters"]]
    assert names == sorted(FAMILIES["redis7"]) and "Marker" not in second
    _fails(world, "InvalidParameterValue", "DescribeEngineDefaultParameters", CacheParameterGroupFamily="redis99")
    _fails(world, "InvalidParameterValue", "DescribeEngineDefaultParameters", CacheParameterGroupFamily="redis7",
           MaxRecords=5)


@pytest.mark.parametrize(("values", "named"), [
    ({"maxmemory-policy": "most-keys"}, "maxmemory-policy"),
    ({"timeout": "abc"}, "timeout"),
    ({"timeout": "10"}, "timeout"),  # 0, or 20 and more
    ({"active-defrag-cycle-max": "99"}, "active-defrag-cycle-max"),
    ({"notify-keyspace-events": "Q"}, "notify-keyspace-events"),
    ({"no-such-parameter": "1"}, "no-such-parameter"),
    ({"activerehashing": "no"}, "activerehashing"),  # not modifiable in redis7
    ({"cluster-enabled": "yes"}, "cluster-enabled"),
])
def test_modify_refusals_name_the_parameter(world: World, values: dict[str, str], named: str) -> None:
    _create(world)
    _modify(world, "pg", maxmemory_policy="allkeys-lru")
    message = _fails(world, "InvalidParameterValue", "ModifyCacheParameterGroup", CacheParameterGroupName="pg",
                     ParameterNameValues=[{"ParameterName": k, "ParameterValue": v} for k, v in values.items()])
    assert named in message
    assert set(_params(world, "pg", Source="user")) == {"maxmemory-policy"}  # nothing of it was kept


def test_errors(world: World) -> None:
    _create(world)
    _fails(world, "CacheParameterGroupAlreadyExists", "CreateCacheParameterGroup", CacheParameterGroupName="PG",
           CacheParameterGroupFamily="redis7", Description="d")
    _fails(world, "InvalidParameterValue", "CreateCacheParameterGroup", CacheParameterGroupName="x",
           CacheParameterGroupFamily="redis1", Description="d")
    _fails(world, "InvalidParameterValue", "CreateCacheParameterGroup", CacheParameterGroupName="bad--name",
           CacheParameterGroupFamily="redis7", Description="d")
    _fails(world, "CacheParameterGroupNotFound", "ModifyCacheParameterGroup", CacheParameterGroupName="nope",
           ParameterNameValues=[{"ParameterName": "timeout", "ParameterValue": "30"}])
    for operation, extra in (("ModifyCacheParameterGroup", {"ParameterNameValues": [
            {"ParameterName": "timeout", "ParameterValue": "30"}]}),
            ("ResetCacheParameterGroup", {"ResetAllParameters": True}), ("DeleteCacheParameterGroup", {})):
        _fails(world, "InvalidParameterValue", operation, CacheParameterGroupName="default.redis7", **extra)
    _fails(world, "InvalidParameterCombination", "ResetCacheParameterGroup", CacheParameterGroupName="pg")
    _fails(world, "InvalidParameterCombination", "ResetCacheParameterGroup", CacheParameterGroupName="pg",
           ResetAllParameters=True, ParameterNameValues=[{"ParameterName": "timeout"}])
    _fails(world, "InvalidParameterValue", "ModifyCacheParameterGroup", CacheParameterGroupName="pg",
           ParameterNameValues=[{"ParameterName": "timeout", "ParameterValue": "30"}] * 21)
    # A cache of another family cannot use it.
    _fails(world, "InvalidParameterValue", "CreateCacheCluster", CacheClusterId="c", CacheParameterGroupName="pg",
           EngineVersion="6.2", **REDIS)
    _fails(world, "CacheParameterGroupNotFound", "CreateCacheCluster", CacheClusterId="c",
           CacheParameterGroupName="nope", **REDIS)
    # cluster-enabled follows cluster mode: a cluster.on group is not for a cluster-mode-disabled cache.
    assert "cluster-enabled" in _fails(world, "InvalidParameterCombination", "CreateCacheCluster", CacheClusterId="c",
                                       CacheParameterGroupName="default.redis7.cluster.on", **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="c", CacheParameterGroupName="pg", EngineVersion="7.1", **REDIS)
    assert "c" in _fails(world, "InvalidCacheParameterGroupState", "DeleteCacheParameterGroup",
                         CacheParameterGroupName="pg")


def test_quota(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.handlers import parameter_groups

    monkeypatch.setattr(parameter_groups, "MAX_GROUPS", 2)
    _create(world, "a")
    _create(world, "b")
    _fails(world, "CacheParameterGroupQuotaExceeded", "CreateCacheParameterGroup", CacheParameterGroupName="c",
           CacheParameterGroupFamily="redis7", Description="d")


def test_nodes_run_with_their_group(world: World) -> None:
    _create(world)
    _modify(world, "pg", maxmemory_policy="allkeys-lru", notify_keyspace_events="Ex")
    world.call("CreateCacheCluster", CacheClusterId="c", CacheParameterGroupName="pg", EngineVersion="7.1", **REDIS)
    world.settle()
    name = "123456789012-us-east-1-c-0001"
    settings = world.runtime.config_of(name).settings
    assert settings["maxmemory-policy"] == "allkeys-lru" and settings["notify-keyspace-events"] == "Ex"
    shown = _cluster(world)["CacheParameterGroup"]
    assert shown == {"CacheParameterGroupName": "pg", "ParameterApplyStatus": "in-sync", "CacheNodeIdsToReboot": []}
    # Immediate: made live on the running node, no restart.
    starts = len(world.runtime.calls_of("start"))
    _modify(world, "pg", maxmemory_policy="volatile-ttl")
    world.settle()
    assert world.runtime.config_of(name).settings["maxmemory-policy"] == "volatile-ttl"
    assert world.runtime.calls_of("apply_config") == [name]
    assert len(world.runtime.calls_of("start")) == starts
    # Requires a reboot: pending until then.
    _modify(world, "pg", appendonly="yes")
    world.settle()
    cluster = _cluster(world)
    assert cluster["CacheParameterGroup"]["ParameterApplyStatus"] == "pending-reboot"
    assert cluster["CacheParameterGroup"]["CacheNodeIdsToReboot"] == ["0001"]
    assert cluster["CacheNodes"][0]["ParameterGroupStatus"] == "pending-reboot"
    assert "appendonly" not in world.runtime.config_of(name).settings
    world.call("RebootCacheCluster", CacheClusterId="c", CacheNodeIdsToReboot=["0001"])
    world.settle_until(lambda: _cluster(world)["CacheClusterStatus"] == "available")
    assert world.runtime.config_of(name).settings["appendonly"] == "yes"
    assert _cluster(world)["CacheParameterGroup"]["ParameterApplyStatus"] == "in-sync"
    # A reset goes back to the default, live.
    world.call("ResetCacheParameterGroup", CacheParameterGroupName="pg",
               ParameterNameValues=[{"ParameterName": "maxmemory-policy"}])
    world.settle()
    assert world.runtime.config_of(name).settings["maxmemory-policy"] == "volatile-lru"


def test_modify_cache_cluster_changes_its_group(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="7.1", **REDIS)
    world.settle()
    assert _cluster(world)["CacheParameterGroup"]["CacheParameterGroupName"] == "default.redis7"
    _create(world)
    _modify(world, "pg", maxmemory_policy="allkeys-lru")
    world.call("ModifyCacheCluster", CacheClusterId="c", CacheParameterGroupName="pg", ApplyImmediately=True)
    world.settle()
    assert _cluster(world)["CacheParameterGroup"]["CacheParameterGroupName"] == "pg"
    assert world.runtime.config_of("123456789012-us-east-1-c-0001").settings["maxmemory-policy"] == "allkeys-lru"
    _fails(world, "CacheParameterGroupNotFound", "ModifyCacheCluster", CacheClusterId="c",
           CacheParameterGroupName="nope")


def test_memcached_options_at_start(world: World) -> None:
    _create(world, "mc", "memcached1.6")
    world.call("ModifyCacheParameterGroup", CacheParameterGroupName="mc", ParameterNameValues=[
        {"ParameterName": "max_item_size", "ParameterValue": "2097152"},
        {"ParameterName": "slab_reassign", "ParameterValue": "1"},
        {"ParameterName": "hash_algorithm", "ParameterValue": "murmur3"}])
    world.call("CreateCacheCluster", CacheClusterId="m", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=1, CacheParameterGroupName="mc")
    world.settle()
    settings = world.runtime.config_of("123456789012-us-east-1-m-0001").settings
    assert settings["-I"] == "2097152" and settings["-o"] == "hash_algorithm=murmur3,slab_reassign"
    world.call("ModifyCacheParameterGroup", CacheParameterGroupName="mc",
               ParameterNameValues=[{"ParameterName": "chunk_size", "ParameterValue": "96"}])
    world.settle()
    assert _cluster(world, "m")["CacheParameterGroup"]["ParameterApplyStatus"] == "pending-reboot"


def test_replication_group_keeps_its_group_across_failover(world: World) -> None:
    _create(world)
    _modify(world, "pg", maxmemory_policy="allkeys-lru", notify_keyspace_events="Ex")
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
               NumCacheClusters=2, AutomaticFailoverEnabled=True, CacheParameterGroupName="pg", EngineVersion="7.1",
               CacheNodeType="cache.t3.micro", Engine="redis")
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="rg")[
        "ReplicationGroups"][0]["Status"] == "available")
    world.call("TestFailover", ReplicationGroupId="rg", NodeGroupId="0001")
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="rg")[
        "ReplicationGroups"][0]["Status"] == "available")
    # A replica added by scaling starts with the group's values too.
    world.call("IncreaseReplicaCount", ReplicationGroupId="rg", NewReplicaCount=2, ApplyImmediately=True)
    world.settle_until(lambda: world.call("DescribeReplicationGroups", ReplicationGroupId="rg")[
        "ReplicationGroups"][0]["Status"] == "available")
    for member in ("rg-001", "rg-002", "rg-003"):
        settings = world.runtime.config_of(f"123456789012-us-east-1-{member}-0001").settings
        assert settings["maxmemory-policy"] == "allkeys-lru" and settings["notify-keyspace-events"] == "Ex"
        assert _cluster(world, member)["CacheParameterGroup"]["CacheParameterGroupName"] == "pg"
    # ModifyReplicationGroup moves every member to another group; immediate values apply live.
    _create(world, "other")
    world.call("ModifyReplicationGroup", ReplicationGroupId="rg", CacheParameterGroupName="other",
               ApplyImmediately=True)
    world.settle()
    for member in ("rg-001", "rg-002", "rg-003"):
        assert _cluster(world, member)["CacheParameterGroup"]["CacheParameterGroupName"] == "other"
        settings = world.runtime.config_of(f"123456789012-us-east-1-{member}-0001").settings
        assert settings["maxmemory-policy"] == "volatile-lru"


@pytest.mark.parametrize("kind", ["cluster", "group"])
def test_pending_reboot_parameters_apply_in_the_maintenance_window(world: World, kind: str) -> None:
    _create(world)
    # The fake clock starts Thursday 2026-01-01 12:00 UTC: the window is an hour ahead.
    window = {"PreferredMaintenanceWindow": "thu:13:00-thu:14:00", "CacheParameterGroupName": "pg"}
    if kind == "cluster":
        world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="7.1", **REDIS, **window)
        member = "c"
    else:
        world.call("CreateReplicationGroup", ReplicationGroupId="rg", ReplicationGroupDescription="d",
                   NumCacheClusters=2, AutomaticFailoverEnabled=True, EngineVersion="7.1", **REDIS, **window)
        member = "rg-001"
    world.settle_until(lambda: _cluster(world, member)["CacheClusterStatus"] == "available")
    _modify(world, "pg", appendonly="yes")
    world.settle()
    assert _cluster(world, member)["CacheParameterGroup"]["ParameterApplyStatus"] == "pending-reboot"
    world.clock.advance(3600 + 60)
    world.service.controller.enqueue_all()
    world.settle_until(lambda: _cluster(world, member)["CacheParameterGroup"]["ParameterApplyStatus"] == "in-sync")
    assert world.runtime.config_of(f"123456789012-us-east-1-{member}-0001").settings["appendonly"] == "yes"


def test_a_restored_cache_starts_with_its_group(world: World) -> None:
    _create(world)
    _modify(world, "pg", maxmemory_policy="allkeys-lru")
    world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="7.1", **REDIS)
    world.settle()
    world.call("CreateSnapshot", CacheClusterId="c", SnapshotName="s")
    settle(world, lambda: world.call("DescribeSnapshots", SnapshotName="s")["Snapshots"][0][
        "SnapshotStatus"] == "available")
    world.call("CreateCacheCluster", CacheClusterId="r", SnapshotName="s", CacheParameterGroupName="pg",
               EngineVersion="7.1", **REDIS)
    settle(world, lambda: _cluster(world, "r")["CacheClusterStatus"] == "available")
    assert world.runtime.config_of("123456789012-us-east-1-r-0001").settings["maxmemory-policy"] == "allkeys-lru"
    assert "maxmemory-policy" not in world.runtime.config_of("123456789012-us-east-1-c-0001").settings


def test_an_upgrade_to_another_family_takes_a_group_of_it(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="c", EngineVersion="6.2", **REDIS)
    world.settle()
    world.call("ModifyCacheCluster", CacheClusterId="c", EngineVersion="7.1", ApplyImmediately=True)
    world.settle()
    assert _cluster(world)["CacheParameterGroup"]["CacheParameterGroupName"] == "default.redis7"
    _create(world, "six", "redis6.x")
    world.call("CreateCacheCluster", CacheClusterId="d", EngineVersion="6.2", CacheParameterGroupName="six", **REDIS)
    world.settle()
    assert "CacheParameterGroupName" in _fails(world, "InvalidParameterCombination", "ModifyCacheCluster",
                                               CacheClusterId="d", EngineVersion="7.1", ApplyImmediately=True)
    _create(world, "seven")
    world.call("ModifyCacheCluster", CacheClusterId="d", EngineVersion="7.1", CacheParameterGroupName="seven",
               ApplyImmediately=True)
    world.settle()
    assert _cluster(world, "d")["CacheParameterGroup"]["CacheParameterGroupName"] == "seven"
