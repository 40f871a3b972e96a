"""Operation name -> handler, from every handler module."""

from __future__ import annotations

from controlplane.handlers import cache_clusters, engines, events, replication_groups, tags
from controlplane.handlers.context import Handler


def all_handlers() -> dict[str, Handler]:
    table: dict[str, Handler] = {}
    for module in (cache_clusters, engines, events, replication_groups, tags):
        for name, handler in module.HANDLERS.items():
            assert name not in table, f"{name} handled twice"
            table[name] = handler
    return table
