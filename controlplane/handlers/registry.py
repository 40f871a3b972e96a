"""Operation name -> handler, from every handler module: the service layer's one entrance for
the Query route (the JSON API calls the typed functions themselves)."""

from __future__ import annotations

from typing import cast

from controlplane.handlers import (
    cache_clusters,
    cache_security_groups,
    engines,
    events,
    global_datastores,
    migration,
    node_types,
    parameter_groups,
    replication_groups,
    reserved,
    serverless,
    service_updates,
    snapshots,
    subnet_groups,
    tags,
    user_groups,
    users,
)
from controlplane.handlers.context import AnyHandler


def all_handlers() -> dict[str, AnyHandler]:
    table: dict[str, AnyHandler] = {}
    modules = (cache_clusters, cache_security_groups, engines, events, global_datastores, migration, node_types,
               parameter_groups, replication_groups, reserved, serverless, service_updates, snapshots, subnet_groups,
               tags, users, user_groups)
    for module in modules:
        # Each HANDLERS is a HandlerTable, so mypy has checked every entry against its operation.
        for name, handler in module.HANDLERS.items():
            assert name not in table, f"{name} handled twice"
            table[name] = cast(AnyHandler, handler)
    return table
