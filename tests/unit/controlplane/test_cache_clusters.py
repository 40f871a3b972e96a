"""The cache-cluster lifecycle on the fake runtime: handlers record intent, the loop acts."""

from __future__ import annotations

import ipaddress

import pytest

from controlplane.state.records import CacheCluster
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}
MEMCACHED = {"Engine": "memcached", "CacheNodeType": "cache.m5.large"}


def _cluster(world: World, cluster_id: str) -> dict:
    return world.call("DescribeCacheClusters", CacheClusterId=cluster_id, ShowCacheNodeInfo=True)[
        "CacheClusters"][0]


def test_create_is_creating_until_the_node_answers(world: World) -> None:
    world.runtime.set_ready_after(3)
    created = world.call("CreateCacheCluster", CacheClusterId="Web", **REDIS)["CacheCluster"]
    assert created["CacheClusterStatus"] == "creating"
    assert created["CacheClusterId"] == "web"
    assert _cluster(world, "web")["CacheClusterStatus"] == "creating"  # nothing has run yet

    world.settle()
    cluster = _cluster(world, "web")
    assert cluster["CacheClusterStatus"] == "available"
    assert cluster["EngineVersion"] == "7.1.0"  # AWS's release of the default line; the binary: in an event
    (node,) = cluster["CacheNodes"]
    assert node["CacheNodeStatus"] == "available"
    assert node["Endpoint"]["Port"] == 6379
    assert ipaddress.ip_address(node["Endpoint"]["Address"]) in ipaddress.ip_network("127.0.220.0/24")
    config = world.runtime.config_of("123456789012-us-east-1-web-0001")
    assert config.engine == "redis" and config.memory_mb == 512  # cache.t3.micro: 0.5 GiB
    assert world.events("web") == [
        "Engine version 7.1.0 is not installed on this machine; the nodes run redis 7.0.15",
        "Added cache node 0001 in availability zone us-east-1" + node["CustomerAvailabilityZone"][-1],
        "Cache cluster created",
    ]


def test_each_node_gets_its_own_address_on_the_asked_port(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=3, Port=11311, **MEMCACHED)
    world.settle()
    cluster = _cluster(world, "mc")
    endpoints = {(n["Endpoint"]["Address"], n["Endpoint"]["Port"]) for n in cluster["CacheNodes"]}
    assert len({a for a, _ in endpoints}) == 3 and {p for _, p in endpoints} == {11311}
    assert cluster["ConfigurationEndpoint"]["Port"] == 11311
    name = "123456789012-us-east-1-mc-cfg"
    assert world.hub.endpoints[name] == (cluster["ConfigurationEndpoint"]["Address"], 11311)
    assert {(m.ip, m.port) for m in world.hub.members[name]} == endpoints
    assert world.runtime.config_of("123456789012-us-east-1-mc-0001").threads == 2  # m5.large: 2 vCPUs


def test_memcached_resize_up_and_down(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=2, **MEMCACHED)
    world.settle()
    out = world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=4, ApplyImmediately=True)
    assert out["CacheCluster"]["CacheClusterStatus"] == "modifying"
    world.settle()
    cluster = _cluster(world, "mc")
    assert [n["CacheNodeId"] for n in cluster["CacheNodes"]] == ["0001", "0002", "0003", "0004"]
    assert cluster["CacheClusterStatus"] == "available" and cluster["NumCacheNodes"] == 4

    with pytest.raises(ApiError) as err:
        world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=2, ApplyImmediately=True)
    assert err.value.code == "InvalidParameterValue"
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=2, CacheNodeIdsToRemove=["0001", "0003"],
               ApplyImmediately=True)
    world.settle()
    cluster = _cluster(world, "mc")
    assert [n["CacheNodeId"] for n in cluster["CacheNodes"]] == ["0002", "0004"]
    assert "123456789012-us-east-1-mc-0001" in world.runtime.calls_of("remove")
    events = world.events("mc")
    assert "Finished modifying number of nodes from 2 to 4" in events
    assert "Finished modifying number of nodes from 4 to 2" in events
    # Node ids are not reused after a removal.
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3, ApplyImmediately=True)
    world.settle()
    assert [n["CacheNodeId"] for n in _cluster(world, "mc")["CacheNodes"]] == ["0002", "0004", "0005"]


def test_modify_without_apply_immediately_is_pending(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=1, **MEMCACHED)
    world.settle()
    out = world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3)
    assert out["CacheCluster"]["PendingModifiedValues"] == {"NumCacheNodes": 3}
    assert out["CacheCluster"]["CacheClusterStatus"] == "available"
    world.settle()
    assert len(_cluster(world, "mc")["CacheNodes"]) == 1

    # The fake clock starts Thursday 2026-01-01 12:00 UTC; put the window an hour ahead.
    world.call("ModifyCacheCluster", CacheClusterId="mc", PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    world.service.controller.enqueue_all()
    world.settle()
    assert len(_cluster(world, "mc")["CacheNodes"]) == 1  # not yet
    world.clock.advance(3600 + 60)
    world.service.controller.enqueue_all()
    world.settle()
    cluster = _cluster(world, "mc")
    assert len(cluster["CacheNodes"]) == 3 and cluster["PendingModifiedValues"] == {}
    assert "Applying pending modifications in the maintenance window" in world.events("mc")


def _through_the_window(world: World) -> None:
    world.clock.advance(3600 + 60)  # the fake clock starts Thu 12:00; the windows below are at 13:00
    world.service.controller.enqueue_all()
    world.settle()
    world.clock.advance(7 * 24 * 3600 - 3600 - 60)  # and on to the same time a week later


def test_going_back_after_the_window_is_a_change(world: World) -> None:
    """A pending change the window carried out is the cluster's value from then on: asking for
    the old value afterwards changes the nodes (it was ignored, compared with the old spec)."""
    world.call("CreateCacheCluster", CacheClusterId="r", Engine="redis", CacheNodeType="cache.t3.micro")
    world.settle()
    world.call("ModifyCacheCluster", CacheClusterId="r", CacheNodeType="cache.t3.small",
               PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    _through_the_window(world)
    assert _cluster(world, "r")["CacheNodeType"] == "cache.t3.small"
    out = world.call("ModifyCacheCluster", CacheClusterId="r", CacheNodeType="cache.t3.micro")
    assert out["CacheCluster"]["PendingModifiedValues"] == {"CacheNodeType": "cache.t3.micro"}
    _through_the_window(world)
    assert _cluster(world, "r")["CacheNodeType"] == "cache.t3.micro"
    rec = world.service.store.records(CacheCluster)[0]
    assert [n.node_type for n in rec.status.nodes] == ["cache.t3.micro"]


def test_an_equal_later_request_is_not_taken_as_applied(world: World) -> None:
    """The window's application of "3 nodes" does not count for a later request of 3 nodes."""
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=2, **MEMCACHED)
    world.settle()
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3,
               PreferredMaintenanceWindow="thu:13:00-thu:14:00")
    _through_the_window(world)
    assert len(_cluster(world, "mc")["CacheNodes"]) == 3
    world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=2, CacheNodeIdsToRemove=["0003"],
               ApplyImmediately=True)
    world.settle()
    assert len(_cluster(world, "mc")["CacheNodes"]) == 2
    out = world.call("ModifyCacheCluster", CacheClusterId="mc", NumCacheNodes=3)
    assert out["CacheCluster"]["PendingModifiedValues"] == {"NumCacheNodes": 3}
    world.settle()
    cluster = _cluster(world, "mc")
    assert cluster["PendingModifiedValues"] == {"NumCacheNodes": 3} and len(cluster["CacheNodes"]) == 2


def test_backup_settings_are_shown_for_redis_only(world: World) -> None:
    # As AWS describes them: a memcached cluster has no SnapshotRetentionLimit/SnapshotWindow.
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=1, **MEMCACHED)
    world.call("CreateCacheCluster", CacheClusterId="web", SnapshotRetentionLimit=2, **REDIS)
    world.settle()
    memcached, redis = _cluster(world, "mc"), _cluster(world, "web")
    assert "SnapshotRetentionLimit" not in memcached and "SnapshotWindow" not in memcached
    assert redis["SnapshotRetentionLimit"] == 2 and "SnapshotWindow" in redis


def test_repeated_describes_show_every_change(world: World) -> None:
    # Describe reuses each unchanged cluster's XML; a change must show at once.
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    def describe() -> list[dict]:
        return world.call("DescribeCacheClusters", ShowCacheNodeInfo=True)["CacheClusters"]

    before = describe()
    assert describe() == before and before[0]["SnapshotRetentionLimit"] == 0
    world.call("ModifyCacheCluster", CacheClusterId="web", SnapshotRetentionLimit=5)
    after = describe()
    assert after[0]["SnapshotRetentionLimit"] == 5
    assert {k: v for k, v in after[0].items() if k != "SnapshotRetentionLimit"} == \
        {k: v for k, v in before[0].items() if k != "SnapshotRetentionLimit"}
    assert world.call("DescribeCacheClusters")["CacheClusters"][0]["SnapshotRetentionLimit"] == 5
    assert "CacheNodes" not in world.call("DescribeCacheClusters")["CacheClusters"][0]


def test_crashed_node_is_recovered(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    world.runtime.crash("123456789012-us-east-1-web-0001")  # exit listener enqueues the cluster
    world.settle()
    assert world.runtime.calls_of("start").count("123456789012-us-east-1-web-0001") == 2
    assert _cluster(world, "web")["CacheNodes"][0]["CacheNodeStatus"] == "available"
    events = world.events("web")
    assert events[-2:] == ["Recovering cache nodes 0001", "Finished recovery for cache nodes 0001"]


def test_reboot_restarts_the_listed_nodes(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=2, **MEMCACHED)
    world.settle()
    out = world.call("RebootCacheCluster", CacheClusterId="mc", CacheNodeIdsToReboot=["0002"])
    assert out["CacheCluster"]["CacheClusterStatus"] == "rebooting cache cluster nodes"
    world.settle()
    assert world.runtime.calls_of("kill") == ["123456789012-us-east-1-mc-0002"]  # memcached: no graceful stop
    assert _cluster(world, "mc")["CacheClusterStatus"] == "available"
    assert world.events("mc")[-2:] == ["Cache node 0002 shutdown", "Cache node 0002 restarted"]
    with pytest.raises(ApiError) as err:
        world.call("RebootCacheCluster", CacheClusterId="mc", CacheNodeIdsToReboot=["0009"])
    assert err.value.code == "InvalidParameterValue"


def test_delete_says_deleting_then_the_cluster_is_gone(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    out = world.call("DeleteCacheCluster", CacheClusterId="web")
    assert out["CacheCluster"]["CacheClusterStatus"] == "deleting"
    world.settle()
    with pytest.raises(ApiError) as err:
        world.call("DescribeCacheClusters", CacheClusterId="web")
    assert (err.value.code, err.value.status) == ("CacheClusterNotFound", 404)
    assert world.runtime.calls_of("remove") == ["123456789012-us-east-1-web-0001"]
    assert world.events("web")[-1] == "Cache cluster deleted"


def test_changing_cluster_in_progress_is_refused(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    for op, extra in (("DeleteCacheCluster", {}), ("RebootCacheCluster", {"CacheNodeIdsToReboot": ["0001"]}),
                      ("ModifyCacheCluster", {"SnapshotRetentionLimit": 2})):
        with pytest.raises(ApiError) as err:
            world.call(op, CacheClusterId="web", **extra)
        assert err.value.code == "InvalidCacheClusterState"


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 2},
         "InvalidParameterValue"),
        ({"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t9.huge"}, "InvalidParameterValue"),
        ({"CacheClusterId": "web", "Engine": "redis"}, "InvalidParameterValue"),
        ({"CacheClusterId": "1web", **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "we--b", **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "web-", **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "w" * 51, **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "web", "EngineVersion": "9.9", **REDIS}, "InvalidParameterCombination"),
        ({"CacheClusterId": "web", "Engine": "mongodb", "CacheNodeType": "cache.t3.micro"}, "InvalidParameterValue"),
        ({"CacheClusterId": "mc", "NumCacheNodes": 41, **MEMCACHED}, "NodeQuotaForClusterExceeded"),
        ({"CacheClusterId": "mc", "NumCacheNodes": 1, "SnapshotRetentionLimit": 1, **MEMCACHED},
         "SnapshotFeatureNotSupportedFault"),
        ({"CacheClusterId": "web", "PreferredMaintenanceWindow": "sun:01:00-sun:01:30", **REDIS},
         "InvalidParameterValue"),
        ({"CacheClusterId": "web", "PreferredAvailabilityZone": "eu-west-1a", **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "web", "AZMode": "sideways", **REDIS}, "InvalidParameterValue"),
        ({"CacheClusterId": "web", "CacheSubnetGroupName": "nope", **REDIS}, "CacheSubnetGroupNotFoundFault"),
    ],
)
def test_bad_create_requests_get_aws_errors_and_change_nothing(world: World, params: dict, code: str) -> None:
    with pytest.raises(ApiError) as err:
        world.call("CreateCacheCluster", **params)
    assert err.value.code == code and err.value.status == 400
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_duplicate_id_is_refused(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    with pytest.raises(ApiError) as err:
        world.call("CreateCacheCluster", CacheClusterId="WEB", **REDIS)
    assert err.value.code == "CacheClusterAlreadyExists"


def test_accounts_and_regions_do_not_see_each_other(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    other_account = type(world.call)(world.service, account="210987654321")
    other_region = type(world.call)(world.service, region="eu-west-1")
    for caller in (other_account, other_region):
        assert caller("DescribeCacheClusters")["CacheClusters"] == []
        caller("CreateCacheCluster", CacheClusterId="web", **REDIS)  # the same id is free there
    world.settle()
    arns = {c("DescribeCacheClusters")["CacheClusters"][0]["ARN"] for c in (world.call, other_account, other_region)}
    assert arns == {
        "arn:aws:elasticache:us-east-1:123456789012:cluster:web",
        "arn:aws:elasticache:us-east-1:210987654321:cluster:web",
        "arn:aws:elasticache:eu-west-1:123456789012:cluster:web",
    }
    addresses = {c("DescribeCacheClusters", ShowCacheNodeInfo=True)["CacheClusters"][0]["CacheNodes"][0][
        "Endpoint"]["Address"] for c in (world.call, other_account, other_region)}
    assert len(addresses) == 3


def test_every_node_has_an_address_of_its_own_whatever_its_port(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="mc", NumCacheNodes=2, **MEMCACHED)
    world.settle()
    hosts = [n["Endpoint"]["Address"] for c in world.call("DescribeCacheClusters", ShowCacheNodeInfo=True)[
        "CacheClusters"] for n in c["CacheNodes"]]
    assert len(hosts) == len(set(hosts)) == 3


def test_paging(world: World) -> None:
    for i in range(25):
        world.call("CreateCacheCluster", CacheClusterId=f"c{i:02d}", **REDIS)
    first = world.call("DescribeCacheClusters", MaxRecords=20)
    assert len(first["CacheClusters"]) == 20 and first["Marker"]
    second = world.call("DescribeCacheClusters", MaxRecords=20, Marker=first["Marker"])
    assert [c["CacheClusterId"] for c in second["CacheClusters"]] == [f"c{i:02d}" for i in range(20, 25)]
    assert "Marker" not in second
    with pytest.raises(ApiError):
        world.call("DescribeCacheClusters", MaxRecords=5)
    with pytest.raises(ApiError, match="Invalid marker"):
        world.call("DescribeCacheClusters", MaxRecords=20, Marker="not-ours")


def test_paging_survives_deletes_and_creates_between_pages(world: World) -> None:
    for i in range(25):
        world.call("CreateCacheCluster", CacheClusterId=f"c{i:02d}", **REDIS)
    world.settle()
    first = world.call("DescribeCacheClusters", MaxRecords=20)
    # Between the pages: two clusters of the first page go, a new one comes.
    for gone in ("c03", "c07"):
        world.call("DeleteCacheCluster", CacheClusterId=gone)
    world.settle()
    world.call("CreateCacheCluster", CacheClusterId="late", **REDIS)
    second = world.call("DescribeCacheClusters", MaxRecords=20, Marker=first["Marker"])
    # Nothing skipped, nothing repeated: the page starts after the last cluster already seen.
    assert [c["CacheClusterId"] for c in second["CacheClusters"]] == [f"c{i:02d}" for i in range(20, 25)] + ["late"]
    assert "Marker" not in second


def test_state_and_nodes_survive_a_control_plane_restart(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Tags=[{"Key": "team", "Value": "a"}], **REDIS)
    world.settle()
    starts = len(world.runtime.calls_of("start"))
    again = world.restart()
    again.service.controller.enqueue_all()
    again.settle()
    cluster = again.call("DescribeCacheClusters", CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0]
    assert cluster["CacheClusterStatus"] == "available"
    assert len(again.runtime.calls_of("start")) == starts  # re-adopted, not restarted
    tags = again.call("ListTagsForResource", ResourceName=cluster["ARN"])["TagList"]
    assert tags == [{"Key": "team", "Value": "a"}]
    assert "Cache cluster created" in again.events("web")


def test_a_node_that_died_while_the_service_was_down_is_restarted(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    world.runtime.set_exit_listener(lambda name: None)  # nobody is listening: the service is down
    world.runtime.crash("123456789012-us-east-1-web-0001")
    again = world.restart()
    again.service.controller.enqueue_all()
    again.settle()
    assert again.runtime.calls_of("start").count("123456789012-us-east-1-web-0001") == 2
    assert _cluster(again, "web")["CacheNodes"][0]["CacheNodeStatus"] == "available"


def test_permanent_start_failure_is_reported(world: World) -> None:
    world.runtime.fail_next_starts(1, temporary=False)
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    cluster = _cluster(world, "web")
    assert cluster["CacheClusterStatus"] == "incompatible-network"
    assert world.events("web")[-1].startswith("Failed to create cache cluster")


def test_tags(world: World) -> None:
    arn = world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)["CacheCluster"]["ARN"]
    world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": "a", "Value": "3"}])
    assert world.call("ListTagsForResource", ResourceName=arn)["TagList"] == [
        {"Key": "a", "Value": "3"}, {"Key": "b", "Value": "2"}]
    world.call("RemoveTagsFromResource", ResourceName=arn, TagKeys=["a"])
    assert world.call("ListTagsForResource", ResourceName=arn)["TagList"] == [{"Key": "b", "Value": "2"}]
    for name, code in (("not-an-arn", "InvalidARN"),
                       ("arn:aws:elasticache:us-east-1:123456789012:cluster:nope", "CacheClusterNotFound")):
        with pytest.raises(ApiError) as err:
            world.call("ListTagsForResource", ResourceName=name)
        assert err.value.code == code
    with pytest.raises(ApiError) as err:
        world.call("AddTagsToResource", ResourceName=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(50)])
    assert err.value.code == "TagQuotaPerResourceExceeded"


def test_engine_versions_mark_what_runs_here(world: World) -> None:
    versions = world.call("DescribeCacheEngineVersions", Engine="redis")["CacheEngineVersions"]
    by_version = {v["EngineVersion"]: v for v in versions}
    assert by_version["7.0"]["CacheParameterGroupFamily"] == "redis7"
    assert "runs locally as redis 7.0.15" in by_version["7.0"]["CacheEngineVersionDescription"]
    assert "not installed here" in by_version["5.0.6"]["CacheEngineVersionDescription"]
    default = world.call("DescribeCacheEngineVersions", Engine="memcached", DefaultOnly=True)["CacheEngineVersions"]
    assert [v["EngineVersion"] for v in default] == ["1.6.22"]


def test_describe_events_filters(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="a", **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="b", **REDIS)
    world.settle()
    assert {e["SourceIdentifier"] for e in world.call("DescribeEvents")["Events"]} == {"a", "b"}
    assert {e["SourceIdentifier"] for e in world.call("DescribeEvents", SourceType="cache-cluster",
                                                      SourceIdentifier="a")["Events"]} == {"a"}
    assert world.call("DescribeEvents", SourceType="replication-group")["Events"] == []
    world.clock.advance(2 * 3600)
    assert world.call("DescribeEvents")["Events"] == []  # default window: the last hour
    assert len(world.call("DescribeEvents", Duration=180)["Events"]) >= 4
    with pytest.raises(ApiError) as err:
        world.call("DescribeEvents", SourceIdentifier="a")
    assert err.value.code == "InvalidParameterCombination"


def test_reset_deletes_everything(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    import threading

    t = threading.Thread(target=world.service.reset)
    t.start()
    for _ in range(200):
        world.settle()
        if not t.is_alive():
            break
        t.join(0.01)
    t.join(5)
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []
    assert world.runtime.list_managed() == []


def test_unimplemented_operation_is_a_clear_error(world: World) -> None:
    with pytest.raises(ApiError) as err:
        world.call("DescribeServerlessCacheSnapshots")
    assert (err.value.code, err.value.status) == ("NotImplemented", 501)
    assert "DescribeServerlessCacheSnapshots" in err.value.message


def test_a_handler_bug_is_an_internal_failure_not_a_crash(world: World) -> None:
    from controlplane.protocol.errors import ServiceError

    def broken(ctx: object, params: object) -> dict:
        raise ServiceError("NoSuchErrorShape", "typo in a handler")

    def crashing(ctx: object, params: object) -> dict:
        raise ZeroDivisionError

    for handler in (broken, crashing):
        world.service.query.handlers["DescribeCacheClusters"] = handler
        with pytest.raises(ApiError) as err:
            world.call("DescribeCacheClusters")
        assert (err.value.code, err.value.status) == ("InternalFailure", 500)


def test_orphan_nodes_are_removed_at_start(world: World) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    from engine.runtime.base import NodeConfig

    world.runtime.start(NodeConfig(name="123456789012-us-east-1-gone-0001", engine="redis", version="7.0.15",
                                   host="127.0.220.99", port=6379, memory_mb=64))
    again = world.restart()
    assert again.service.remove_orphans() == ["123456789012-us-east-1-gone-0001"]
    assert [n.name for n in again.runtime.list_managed()] == ["123456789012-us-east-1-web-0001"]
