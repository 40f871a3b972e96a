"""The dashboard in headless Chromium against a live service with real nodes: caches created
with boto3 appear without a reload, a replication group created from the page's form reaches
`available`, and the failover drill runs from the page: the primary is killed with its button,
the roles swap and the timeline fills. /docs renders with no internet. Every step is a
screenshot under tests/browser/artifacts/<test>/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conftest import LiveServer
from tests.browser.conftest import Shots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Playwright's expect() polls on its own, bounded by these (milliseconds): no sleeps here.
APPEAR = 5_000  # a change the live feed pushes
SETTLE = 60_000  # real nodes starting, replicating, failing over


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_a_cache_created_with_boto3_appears_without_a_reload(page: Any, shots: Shots, live: LiveServer) -> None:
    expect = _expect()
    page.goto("/")  # a browser's GET / lands on the dashboard
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.locator("#feed-state [data-state=live]")).to_have_text("live", timeout=APPEAR)
    shots("empty-overview")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    ec = live.client()
    ec.create_cache_cluster(CacheClusterId="web", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    row = page.locator('tr[data-cache="web"]')
    expect(row).to_be_visible(timeout=APPEAR)
    expect(row.locator(".cache-status")).to_have_text(re.compile("creating|available"))  # redis starts fast
    shots("web-appeared")
    expect(row.locator(".cache-status")).to_have_text("available", timeout=SETTLE)
    expect(row.locator(".node.health-healthy")).to_have_count(1, timeout=APPEAR)
    node = ec.describe_cache_clusters(CacheClusterId="web", ShowCacheNodeInfo=True)["CacheClusters"][0]["CacheNodes"][0]
    address = f"{node['Endpoint']['Address']}:{node['Endpoint']['Port']}"
    expect(row.locator(f'button.copy[data-copy="{address}"]')).to_be_visible()
    shots("web-available")

    ec.delete_cache_cluster(CacheClusterId="web")
    expect(row).to_have_count(0, timeout=SETTLE)
    assert navigations == [], f"the page reloaded: {navigations}"


def _primary(page: Any) -> str:
    return str(page.locator('.node-group .tier:first-child .node').first.get_attribute("data-node"))


def test_the_failover_drill_from_the_page(page: Any, shots: Shots, live: LiveServer) -> None:
    expect = _expect()
    # Create a replication group with automatic failover through the page's form, confirmed.
    page.goto("/dashboard/create")
    page.get_by_label("Replication group (a primary and replicas; redis or valkey)").check()
    page.get_by_label("Identifier", exact=True).fill("drill")
    page.get_by_label("Replicas", exact=True).fill("2")
    shots("create-form")
    page.get_by_role("button", name="Create…").click()
    expect(page.get_by_role("heading", name="Confirm: Create")).to_be_visible()
    shots("create-confirm")
    page.get_by_role("button", name="Confirm: Create").click()
    row = page.locator('tr[data-cache="drill"]')
    expect(row).to_be_visible()
    expect(page.locator(".notice")).to_contain_text("Replication group drill is being created")
    expect(row.locator(".cache-status")).to_have_text("available", timeout=SETTLE)
    expect(row.locator(".node.role-primary")).to_have_count(1, timeout=APPEAR)
    expect(row.locator(".node.role-replica.health-healthy")).to_have_count(2, timeout=APPEAR)
    shots("group-available-overview")

    row.get_by_role("link", name="drill").click()
    expect(page.get_by_role("heading", name=re.compile("^drill"))).to_be_visible()
    expect(page.locator("#live .node.health-healthy")).to_have_count(3, timeout=APPEAR)
    expect(page.locator("#charts .chart-state")).to_contain_text("3 node(s)", timeout=APPEAR)
    old = _primary(page)
    assert old.endswith("drill-001-0001")
    shots("group-page")

    # Kill the primary with its button; confirm.
    page.get_by_role("button", name="Kill node drill-001/0001").click()
    expect(page.get_by_role("heading", name="Confirm: Inject fault")).to_be_visible()
    shots("kill-confirm")
    page.get_by_role("button", name="Confirm: Inject fault").click()
    expect(page.locator(".notice")).to_contain_text("Fault injection: cache node 0001 killed")
    timeline = page.locator("ol.timeline")
    expect(timeline).to_contain_text("Fault injection: cache node 0001 killed", timeout=APPEAR)
    shots("primary-killed")

    # The roles swap without a reload: a replica is the primary now, and the timeline says so.
    expect(page.locator(".node-group .tier:first-child .node")).not_to_have_attribute(
        "data-node", old, timeout=SETTLE)
    expect(timeline).to_contain_text(re.compile(r"Failover from primary node drill-001 to replica node drill-00[23] "
                                                r"completed"), timeout=SETTLE)
    new = _primary(page)
    shots("roles-swapped")
    described = live.client().describe_replication_groups(ReplicationGroupId="drill")["ReplicationGroups"][0]
    roles = {mb["CacheClusterId"]: mb["CurrentRole"] for mb in described["NodeGroups"][0]["NodeGroupMembers"]}
    assert new.endswith(f"{next(c for c, r in roles.items() if r == 'primary')}-0001")
    # The old primary comes back as a replica, and the group settles.
    expect(page.locator("#cache-status")).to_have_text("available", timeout=SETTLE)
    expect(page.locator("#live .node.health-healthy")).to_have_count(3, timeout=SETTLE)
    shots("recovered")

    # TestFailover from the page, and its refusal while one is under way is shown with AWS's code.
    page.get_by_role("button", name="Test failover of node group 0001").click()
    page.get_by_role("button", name="Confirm: Test failover").click()
    expect(page.locator(".notice")).to_contain_text("Test failover of node group 0001 of drill started")
    expect(timeline).to_contain_text("Test Failover API called for node group 0001", timeout=APPEAR)
    shots("test-failover")

    page.get_by_role("button", name="Delete drill").click()
    page.get_by_role("button", name="Confirm: Delete").click()
    expect(page).to_have_url(re.compile(r"/dashboard\?done="))
    expect(page.locator('tr[data-cache="drill"]')).to_have_count(0, timeout=SETTLE)


def test_a_refusal_shows_the_aws_error(page: Any, shots: Shots) -> None:
    expect = _expect()
    page.goto("/dashboard/replication-groups/nope")
    expect(page.get_by_role("heading", name="Refused: ReplicationGroupNotFoundFault")).to_be_visible()
    shots("not-found")


def test_docs_render_with_no_internet(page: Any, shots: Shots) -> None:
    # The page fixture refuses every request that leaves 127.0.0.0/8, and fails the test if one was made.
    expect = _expect()
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("elasticache-local", timeout=APPEAR)
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    shots("docs")


def test_reading_works_with_javascript_off(browser: Any, live: LiveServer, shots: Shots) -> None:
    expect = _expect()
    context = browser.new_context(java_script_enabled=False, base_url=live.url, viewport={"width": 1366, "height": 900})
    try:
        tab = context.new_page()
        live.client().create_cache_cluster(CacheClusterId="nojs", Engine="memcached", CacheNodeType="cache.t3.micro",
                                           NumCacheNodes=2)
        tab.goto("/dashboard")
        row = tab.locator('tr[data-cache="nojs"]')
        expect(row).to_be_visible()
        expect(row.get_by_role("button", name=re.compile("Copy"))).to_have_count(0)  # JavaScript-only, hidden
        tab.get_by_role("link", name="nojs").click()
        expect(tab.get_by_role("heading", name="Nodes")).to_be_visible()
        shots.page = tab
        shots("cluster-page-no-javascript")
    finally:
        context.close()
        live.client().delete_cache_cluster(CacheClusterId="nojs")
