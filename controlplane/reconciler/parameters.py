"""Parameter groups on running nodes: a node starts with its cache's group values (NodeConfig
settings); while it runs, `immediate` changes are made live (CONFIG SET through the runtime) and
the others wait for its next restart (a reboot, a replacement, the maintenance window's rolling
restart), with the node reading `pending-reboot` meanwhile. Each node records the settings it
runs with (NodeStatus.parameters), so every pass compares them with the group's: level-triggered."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from controlplane import catalog
from controlplane.reconciler.infra import Infra, node_name
from controlplane.state.parameter_groups import after_live, engine_settings, plan_changes
from controlplane.state.records import CacheCluster, NodeStatus
from controlplane.state.store import Store
from engine import RuntimeError_

log = logging.getLogger("elasticache_local.reconciler")


def wanted(store: Store, rec: CacheCluster) -> dict[str, str]:
    """The engine settings the nodes of `rec` should run with (a member: its group's group)."""
    return engine_settings(store, rec.account, rec.region, rec.spec.parameter_group)


def started_with(node: NodeStatus, settings: Mapping[str, str]) -> None:
    """A node was (re)started with `settings`: it runs them all."""
    node.parameters = dict(settings)
    node.parameter_status = "in-sync"


def sync(store: Store, infra: Infra, rec: CacheCluster) -> CacheCluster:
    """Bring every available node of `rec` to its group's values as far as can be done live;
    record what each runs with and its ParameterGroupStatus."""
    family = catalog.family_of(rec.spec.engine, rec.target().engine_version)
    target = wanted(store, rec)
    results: dict[str, tuple[dict[str, str], str]] = {}
    for node in rec.status.nodes:
        if node.status != "available":
            continue
        running = node.parameters or {}
        live, reboot = plan_changes(family, running, target)
        if live:
            try:
                infra.runtime.apply_config(node_name(rec.account, rec.region, rec.id, node.node_id), live)
                running = after_live(running, target, live)
            except RuntimeError_ as exc:  # not reachable now: the next pass tries again
                log.info("%s node %s: parameters not applied yet: %s", rec.id, node.node_id, exc)
                results[node.node_id] = (running, "applying")
                continue
        results[node.node_id] = (running, "pending-reboot" if reboot else "in-sync")
    if all((n.parameters or {}, n.parameter_status or "in-sync") == results[n.node_id]
           for n in rec.status.nodes if n.node_id in results):
        return rec

    def record(c: CacheCluster) -> None:
        for n in c.status.nodes:
            if n.node_id in results:
                n.parameters, n.parameter_status = results[n.node_id]

    return store.update(rec.key, CacheCluster, record) or rec
