"""What the pages show, built from the Describe answers (controlplane.dashboard.backend) and the
health monitor: plain data for the templates, no HTML here and no rule of the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from controlplane import windows
from controlplane.dashboard.backend import DashboardBackend, all_clusters, all_groups
from controlplane.handlers.context import RequestContext
from controlplane.model import messages as m
from controlplane.reconciler.infra import node_name
from controlplane.state.records import CacheCluster, ReplicationGroup


@dataclass
class Endpoint:
    label: str  # "primary", "reader", "configuration", "node 0001"
    address: str  # host:port
    serves: str = ""  # which node answers it now, where known


@dataclass
class NodeView:
    cluster_id: str
    node_id: str
    status: str  # the node's CacheNodeStatus
    health: str  # healthy | failing | down | unknown: the health monitor's view
    role: str | None  # primary | replica | None (memcached, standalone)
    az: str
    address: str
    name: str  # the runtime's node name (what the live feed calls it)

    @property
    def label(self) -> str:
        return f"{self.cluster_id}/{self.node_id}"


@dataclass
class CacheView:
    kind: str  # replication-group | cache-cluster
    id: str
    account: str
    region: str
    engine: str
    version: str
    status: str
    node_type: str
    endpoints: list[Endpoint]
    nodes: list[NodeView]
    description: str = ""
    automatic_failover: str = ""
    multi_az: str = ""
    members: list[m.CacheCluster] = field(default_factory=list)
    node_groups: list[NodeGroupView] = field(default_factory=list)
    # The binaries the nodes report (version shows AWS's release of the cache's line, as the API does).
    running: str = ""

    @property
    def url(self) -> str:
        base = "replication-groups" if self.kind == "replication-group" else "cache-clusters"
        return f"/dashboard/{base}/{self.id}?account={self.account}&region={self.region}"

    @property
    def parameter_group(self) -> str:
        """The members' parameter group, and how far its values have reached their nodes."""
        groups = [c["CacheParameterGroup"] for c in self.members if c.get("CacheParameterGroup")]
        if not groups:
            return ""
        statuses = {g.get("ParameterApplyStatus", "in-sync") for g in groups}
        status = next((s for s in ("pending-reboot", "applying") if s in statuses), "in-sync")
        return f"{groups[0].get('CacheParameterGroupName', '')} ({status})"

    @property
    def live_url(self) -> str:
        """The fragment of the page that the live feed re-fetches."""
        return self.url.replace("?", "/live?", 1)


@dataclass
class NodeGroupView:
    id: str
    status: str
    primary: list[NodeView]
    replicas: list[NodeView]
    endpoints: list[Endpoint]
    slots: str = ""  # cluster mode: the shard's hash slots


def _address(endpoint: m.Endpoint | None) -> str:
    if not endpoint or "Address" not in endpoint:
        return ""
    return f"{endpoint['Address']}:{endpoint.get('Port', '')}"


def node_health(backend: DashboardBackend, name: str, status: str) -> str:
    """The health monitor's reading of a node: `down` once it declared it so, `failing` while
    probes fail short of that, `healthy` after a good probe, `unknown` before any (or unwatched)."""
    if backend.health.is_down(name):
        return "down"
    probe = backend.health.last_probe(name)
    if probe is None:
        return "unknown"
    return "healthy" if probe.ok else "failing"


def _nodes(backend: DashboardBackend, ctx: RequestContext, cluster: m.CacheCluster,
           roles: dict[str, str]) -> list[NodeView]:
    out = []
    for node in cluster.get("CacheNodes", []):
        cluster_id, node_id = cluster["CacheClusterId"], node["CacheNodeId"]
        name = node_name(ctx.account, ctx.region, cluster_id, node_id)
        status = node.get("CacheNodeStatus", "")
        out.append(NodeView(cluster_id, node_id, status, node_health(backend, name, status),
                            roles.get(cluster_id), node.get("CustomerAvailabilityZone", ""),
                            _address(node.get("Endpoint")), name))
    return out


def _running(backend: DashboardBackend, nodes: list[NodeView]) -> str:
    """The engine versions the nodes answer with, as last probed ("" before any answer)."""
    seen = {probe.version for probe in (backend.health.last_probe(n.name) for n in nodes)
            if probe is not None and probe.ok and probe.version}
    return ", ".join(sorted(seen))


def _group_view(backend: DashboardBackend, ctx: RequestContext, group: m.ReplicationGroup,
                members: dict[str, m.CacheCluster]) -> CacheView:
    roles = {mem["CacheClusterId"]: mem.get("CurrentRole", "")
             for ng in group.get("NodeGroups", []) for mem in ng.get("NodeGroupMembers", [])}
    own = [members[c] for c in group.get("MemberClusters", []) if c in members]
    nodes = [n for c in own for n in _nodes(backend, ctx, c, roles)]
    by_cluster = {n.cluster_id: n for n in nodes}
    groups, endpoints = [], []
    for ng in group.get("NodeGroups", []):
        ids = [mem["CacheClusterId"] for mem in ng.get("NodeGroupMembers", [])]
        ng_nodes = [by_cluster[i] for i in ids if i in by_cluster]
        primary = [n for n in ng_nodes if n.role == "primary"]
        replicas = [n for n in ng_nodes if n.role != "primary"]
        ng_endpoints = []
        if ng.get("PrimaryEndpoint"):
            ng_endpoints.append(Endpoint("primary", _address(ng["PrimaryEndpoint"]),
                                         ", ".join(n.label for n in primary)))
        if ng.get("ReaderEndpoint"):
            ng_endpoints.append(Endpoint("reader", _address(ng["ReaderEndpoint"]),
                                         ", ".join(n.label for n in replicas) or "the primary"))
        endpoints += ng_endpoints
        groups.append(NodeGroupView(ng.get("NodeGroupId", ""), ng.get("Status", ""), primary, replicas, ng_endpoints,
                                    ng.get("Slots", "")))
    if group.get("ConfigurationEndpoint"):
        endpoints.append(Endpoint("configuration", _address(group["ConfigurationEndpoint"])))
    first = own[0] if own else {}
    return CacheView(
        kind="replication-group", id=group["ReplicationGroupId"], account=ctx.account, region=ctx.region,
        engine=group.get("Engine") or first.get("Engine", ""), version=first.get("EngineVersion", ""),
        status=group.get("Status", ""), node_type=group.get("CacheNodeType", ""), endpoints=endpoints,
        nodes=nodes, description=group.get("Description", ""),
        automatic_failover=group.get("AutomaticFailover", ""), multi_az=group.get("MultiAZ", ""),
        members=own, node_groups=groups, running=_running(backend, nodes))


def _cluster_view(backend: DashboardBackend, ctx: RequestContext, cluster: m.CacheCluster) -> CacheView:
    nodes = _nodes(backend, ctx, cluster, {})
    endpoints = []
    if cluster.get("ConfigurationEndpoint"):
        endpoints.append(Endpoint("configuration", _address(cluster["ConfigurationEndpoint"])))
    endpoints += [Endpoint(f"node {n.node_id}", n.address, n.label) for n in nodes if n.address]
    return CacheView(
        kind="cache-cluster", id=cluster["CacheClusterId"], account=ctx.account, region=ctx.region,
        engine=cluster.get("Engine", ""), version=cluster.get("EngineVersion", ""),
        status=cluster.get("CacheClusterStatus", ""), node_type=cluster.get("CacheNodeType", ""),
        endpoints=endpoints, nodes=nodes, members=[cluster], running=_running(backend, nodes))


def places(backend: DashboardBackend) -> list[tuple[str, str]]:
    """Every (account, region) that has a cache, and the service's default one."""
    found = {(k.account, k.region) for k in backend.store.resource_keys()
             if k.kind in (CacheCluster.KIND, ReplicationGroup.KIND)}
    found.add((backend.settings.default_account, backend.settings.region))
    return sorted(found)


def caches(backend: DashboardBackend, ctx: RequestContext) -> list[CacheView]:
    """Every cache of one account and region: groups (with their members), then standalone clusters."""
    clusters = all_clusters(ctx)
    members = {c["CacheClusterId"]: c for c in clusters}
    out = [_group_view(backend, ctx, g, members) for g in all_groups(ctx)]
    out += [_cluster_view(backend, ctx, c) for c in clusters if not c.get("ReplicationGroupId")]
    return out


def group(backend: DashboardBackend, ctx: RequestContext, group: m.ReplicationGroup) -> CacheView:
    members = {c["CacheClusterId"]: c for c in all_clusters(ctx) if c.get("ReplicationGroupId") == group.get(
        "ReplicationGroupId")}
    return _group_view(backend, ctx, group, members)


def cluster(backend: DashboardBackend, ctx: RequestContext, cluster: m.CacheCluster) -> CacheView:
    return _cluster_view(backend, ctx, cluster)


@dataclass
class WindowView:
    what: str  # "maintenance" | "snapshot"
    window: str
    next_start: datetime | None


def next_windows(view: CacheView, snapshot_window: str | None, retention: int, now: datetime) -> list[WindowView]:
    """The next maintenance window (the members', as a group has none of its own) and, where
    automatic backups are on, the next snapshot window."""
    out = []
    maintenance = next((c.get("PreferredMaintenanceWindow") for c in view.members
                        if c.get("PreferredMaintenanceWindow")), None)
    if maintenance:
        out.append(WindowView("maintenance", maintenance, _next(maintenance, now)))
    if snapshot_window:
        out.append(WindowView("snapshot", snapshot_window,
                              _next(snapshot_window, now) if retention > 0 else None))
    return out


def _next(window: str, now: datetime) -> datetime | None:
    try:
        return windows.next_window_start(window, now)
    except ValueError:  # a window that does not parse: shown, with no next start
        return None


def pending(view: CacheView, group: m.ReplicationGroup | None) -> list[tuple[str, str, str]]:
    """Pending modifications as (resource, field, value): the group's, then each member's."""
    out: list[tuple[str, str, str]] = []
    if group is not None:
        for key, value in group.get("PendingModifiedValues", {}).items():
            out.append((view.id, key, str(value)))
    for c in view.members:
        for key, value in c.get("PendingModifiedValues", {}).items():
            out.append((c["CacheClusterId"], key, ", ".join(value) if isinstance(value, list) else str(value)))
    return out
