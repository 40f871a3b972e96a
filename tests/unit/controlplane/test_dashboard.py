"""The dashboard's pages and actions on the fake runtime: what they show is what the service
layer answers, every action asks for a confirmation first and then goes through the handlers,
and a refusal carries the AWS code and status."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from controlplane.handlers.cache_clusters import create_cache_cluster
from tests.unit.controlplane.conftest import World, whole_app
from tests.unit.controlplane.test_replication_groups import _make

REDIS = {"Engine": "redis", "CacheNodeType": "cache.t3.micro"}


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    with TestClient(whole_app(world), base_url="http://127.0.0.1:8379") as c:
        yield c


def _act(client: TestClient, name: str, **fields: str) -> tuple[int, str]:
    """An action as the browser sends it: first without, then with the confirmation."""
    first = client.post(f"/dashboard/actions/{name}", data=fields)
    assert first.status_code == 200 and "Confirm:" in first.text, first.text
    assert 'name="confirmed" value="yes"' in first.text
    done = client.post(f"/dashboard/actions/{name}", data={**fields, "confirmed": "yes"}, follow_redirects=False)
    return done.status_code, done.headers.get("location", "") or done.text


def test_a_browser_get_of_the_root_lands_on_the_dashboard(client: TestClient) -> None:
    reply = client.get("/", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
    # A Query API GET still reaches the Query API.
    assert "DescribeCacheClustersResponse" in client.get("/?Action=DescribeCacheClusters&Version=2015-02-02").text


def test_the_overview_lists_every_cache_with_endpoints_roles_and_health(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.call("CreateCacheCluster", CacheClusterId="mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=2)
    _make(world, clusters=3)
    world.settle()
    world.service.health.probe_all()
    page = client.get("/dashboard").text
    for cache in ("web", "mc", "rg"):
        assert f'data-cache="{cache}"' in page
    # The group's members are shown under it, not as caches of their own.
    assert 'data-cache="rg-001"' not in page
    group = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    primary = group["NodeGroups"][0]["PrimaryEndpoint"]
    assert f"{primary['Address']}:{primary['Port']}" in page
    mc = world.call("DescribeCacheClusters", CacheClusterId="mc")["CacheClusters"][0]["ConfigurationEndpoint"]
    assert f'data-copy="{mc["Address"]}:{mc["Port"]}"' in page
    roles = re.findall(r'role-(primary|replica)" data-node="[^"]*-(rg-00\d)-0001"', page)
    assert sorted(roles) == [("primary", "rg-001"), ("replica", "rg-002"), ("replica", "rg-003")]
    assert page.count("health-healthy") == 6  # web, mc's two, the group's three
    newest = world.call("DescribeEvents")["Events"][-1]["Message"]
    assert newest in page and newest in client.get("/dashboard/fragments/events").text


def test_a_caches_row_alone_for_the_live_feed(world: World, client: TestClient) -> None:
    """The row the page re-fetches on a message about one cache: a member cluster is shown by its
    group's row, a cache that is gone answers 204 (the page drops its row)."""
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    _make(world, clusters=2)
    world.settle()
    row = client.get("/dashboard/fragments/cache-row", params={"kind": "cache-cluster", "id": "web"})
    assert row.status_code == 200 and row.text.count("<tr") == 1
    assert 'data-cache="web" data-kind="cache-cluster"' in row.text and "cache-status" in row.text
    member = client.get("/dashboard/fragments/cache-row", params={"kind": "cache-cluster", "id": "rg-002"})
    assert 'data-cache="rg" data-kind="replication-group"' in member.text and "rg-002" in member.text
    group = client.get("/dashboard/fragments/cache-row", params={"kind": "replication-group", "id": "rg"})
    assert group.text == member.text
    # The same markup as the table's row.
    assert group.text.strip() in client.get("/dashboard/fragments/caches").text
    for kind, gone in (("cache-cluster", "nope"), ("replication-group", "nope")):
        assert client.get("/dashboard/fragments/cache-row", params={"kind": kind, "id": gone}).status_code == 204
    assert client.get("/dashboard/fragments/cache-row", params={"kind": "user", "id": "web"}).status_code == 422


def test_the_table_is_rendered_again_only_when_something_it_shows_changed(world: World,
                                                                          client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", **REDIS)
    world.settle()
    first = client.get("/dashboard/fragments/caches").text
    assert client.get("/dashboard/fragments/caches").text == first
    world.call("CreateCacheCluster", CacheClusterId="two", **REDIS)
    assert 'data-cache="two"' in client.get("/dashboard/fragments/caches").text  # a write moved the version
    world.settle()
    world.service.health.probe_all()  # first answers: told by the health monitor
    assert "health-healthy" in client.get("/dashboard/fragments/caches").text


def test_the_overview_filters_by_account_and_region(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="here", **REDIS)
    other = world.service.services.context("111122223333", "eu-west-1")
    create_cache_cluster(other, {"CacheClusterId": "there", "Engine": "redis", "CacheNodeType": "cache.t3.micro"})
    both = client.get("/dashboard").text
    assert 'data-cache="here"' in both and 'data-cache="there"' in both
    only = client.get("/dashboard/fragments/caches", params={"account": "111122223333"}).text
    assert 'data-cache="there"' in only and 'data-cache="here"' not in only
    only = client.get("/dashboard", params={"region": "us-east-1"}).text
    assert 'data-cache="here"' in only and 'data-cache="there"' not in only
    assert 'sse-connect="/api/v1/stream?region=us-east-1"' in only


def test_a_group_page_shows_nodes_endpoints_windows_and_the_timeline(world: World, client: TestClient) -> None:
    _make(world, clusters=2, SnapshotRetentionLimit=1)
    world.settle()
    page = client.get("/dashboard/replication-groups/rg").text
    assert "Node group 0001" in page
    group = world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]
    reader = group["NodeGroups"][0]["ReaderEndpoint"]
    # The reader endpoint points at the replica.
    assert re.search(rf"{reader['Address']}:{reader['Port']}</code>.*?→</span> <span class=\"serves\">rg-002/0001",
                     page, re.S)
    events = world.call("DescribeEvents", SourceType="replication-group", SourceIdentifier="rg")["Events"]
    assert events and events[-1]["Message"] in page
    assert "maintenance</th>" in page and "snapshot</th>" in page
    assert "automatic backups off" not in page  # retention 1: the next snapshot window is shown
    live = client.get("/dashboard/replication-groups/rg/live").text
    assert 'id="live" hx-get="/dashboard/replication-groups/rg/live?' in page and 'sse:resource' in page
    assert "Node group 0001" in live and "<html" not in live
    assert "<dt>Parameter group</dt><dd>default.redis7 (in-sync)</dd>" in live


def test_a_missing_cache_is_the_aws_error(client: TestClient) -> None:
    reply = client.get("/dashboard/replication-groups/nope")
    assert reply.status_code == 404 and "ReplicationGroupNotFoundFault" in reply.text
    reply = client.get("/dashboard/cache-clusters/nope")
    assert reply.status_code == 404 and "CacheClusterNotFound" in reply.text


def test_create_and_delete_go_through_the_handlers_after_a_confirmation(world: World, client: TestClient) -> None:
    status, where = _act(client, "create", kind="cache-cluster", id="fromui", engine="redis",
                         node_type="cache.t3.micro", next="/dashboard")
    assert status == 303 and where.startswith("/dashboard?done=")
    described = world.call("DescribeCacheClusters", CacheClusterId="fromui")["CacheClusters"][0]
    assert described["CacheClusterStatus"] == "creating"
    status, _ = _act(client, "create", kind="replication-group", id="rgui", engine="valkey",
                     node_type="cache.t3.micro", replicas="2", automatic_failover="on", multi_az="on")
    assert status == 303
    group = world.call("DescribeReplicationGroups", ReplicationGroupId="rgui")["ReplicationGroups"][0]
    assert len(group["MemberClusters"]) == 3 and group["AutomaticFailover"] in ("enabling", "enabled")
    world.settle()
    assert _act(client, "delete", kind="cache-cluster", id="fromui")[0] == 303
    assert world.call("DescribeCacheClusters", CacheClusterId="fromui")["CacheClusters"][0][
        "CacheClusterStatus"] == "deleting"


def test_an_unconfirmed_action_does_nothing(world: World, client: TestClient) -> None:
    client.post("/dashboard/actions/create", data={"kind": "cache-cluster", "id": "nope", "engine": "redis",
                                                   "node_type": "cache.t3.micro"})
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_a_refusal_shows_the_aws_code_and_message(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="dup", **REDIS)
    status, text = _act(client, "create", kind="cache-cluster", id="dup", engine="redis", node_type="cache.t3.micro")
    assert status == 400 and "CacheClusterAlreadyExists" in text and "already exists" in text
    status, text = _act(client, "failover", id="nope")
    assert status == 404 and "ReplicationGroupNotFoundFault" in text


def test_a_cross_site_post_is_refused(world: World, client: TestClient) -> None:
    reply = client.post("/dashboard/actions/create", headers={"origin": "http://evil.example"},
                        data={"kind": "cache-cluster", "id": "x", "engine": "redis", "node_type": "cache.t3.micro",
                              "confirmed": "yes"})
    assert reply.status_code == 403
    assert world.call("DescribeCacheClusters")["CacheClusters"] == []


def test_faults_from_the_page(world: World, client: TestClient) -> None:
    _make(world, clusters=2)
    status, _ = _act(client, "node-fault", cluster_id="rg-001", node_id="0001", fault="kill")
    assert status == 303
    assert any("Fault injection: cache node 0001 killed" in e for e in world.events("rg-001"))
    status, _ = _act(client, "zone-down", az="us-east-1a", seconds="30")
    assert status == 303 and "us-east-1a" in world.service.infra.down_azs
    assert "interrupted" in client.get("/dashboard").text
    assert _act(client, "zone-up", az="us-east-1a")[0] == 303 and not world.service.infra.down_azs
    status, text = _act(client, "node-fault", cluster_id="rg-009", node_id="0001", fault="kill")
    assert status == 404 and "CacheClusterNotFound" in text and "rg-009 not found" in text


def test_the_clock_advances_from_the_page(world: World, client: TestClient) -> None:
    world.service.controller.start()  # the advance waits for the control loop to go idle
    try:
        before = world.service.clock.now()
        assert _act(client, "advance-clock", seconds="600")[0] == 303
        assert (world.service.clock.now() - before).total_seconds() >= 600
        status, text = _act(client, "advance-clock", seconds="0")
        assert status == 400 and "InvalidParameterValue" in text
    finally:
        world.service.controller.stop()


def test_docs_load_swagger_ui_from_the_package(client: TestClient) -> None:
    page = client.get("/docs").text
    assert "cdn." not in page and "/dashboard/static/vendor/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert client.get("/dashboard/static/vendor/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
    assert client.get("/dashboard/static/vendor/htmx/htmx.min.js").status_code == 200


def test_a_cache_shows_what_really_runs_beside_its_version(world: World, client: TestClient) -> None:
    world.call("CreateCacheCluster", CacheClusterId="web", Engine="redis", EngineVersion="7.1",
               CacheNodeType="cache.t3.micro")
    world.settle()
    world.service.health.probe_all()
    page = client.get("/dashboard").text
    assert "redis 7.1.0" in page and "runs 7.0.15" in page
    assert "(runs redis 7.0.15 here)" in client.get("/dashboard/cache-clusters/web").text
