"""Cache parameter groups: a family's parameters with the values a customer set. The default
groups (`default.<family>`, and `default.<family>.cluster.on` for Redis 3.2 and later) exist in
every account and region and are read-only. A group's values reach the nodes of the caches
using it (engine_settings); each node records the settings it runs with (NodeStatus.parameters),
so ParameterApplyStatus compares the two."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

from controlplane.state.parameters import FAMILIES, IMMEDIATE, catalogue, engine_of
from controlplane.state.parameters import memcached as memcached_params
from controlplane.state.records import Record, ResourceKey

if TYPE_CHECKING:  # the store imports every record kind, this one too
    from controlplane.state.store import Store

DEFAULT_PREFIX = "default."
CLUSTER_ON = ".cluster.on"


class CacheParameterGroupSpec(BaseModel):
    family: str
    description: str
    values: dict[str, str] = Field(default_factory=dict)  # set by the customer; the rest: defaults
    builtin: bool = False


class CacheParameterGroup(Record):
    """No status: a configuration record, in effect as soon as it is written."""

    KIND: ClassVar[str] = "cache-parameter-group"

    spec: CacheParameterGroupSpec

    def api_status(self) -> str:
        return "available"

    def value(self, name: str) -> str:
        param = catalogue(self.spec.family)[name]
        if name == "cluster-enabled" and self.id.endswith(CLUSTER_ON):
            return self.spec.values.get(name, "yes")
        return self.spec.values.get(name, param.default)


def default_names(family: str) -> list[str]:
    """The built-in groups of a family."""
    names = [DEFAULT_PREFIX + family]
    if "cluster-enabled" in catalogue(family):
        names.append(DEFAULT_PREFIX + family + CLUSTER_ON)
    return names


def builtin_group(family: str, name: str, account: str, region: str, created_at: datetime) -> CacheParameterGroup:
    return CacheParameterGroup(account=account, region=region, id=name, created_at=created_at,
                               spec=CacheParameterGroupSpec(family=family, builtin=True,
                                                            description=f"Default parameter group for {family}"))


def engine_settings(store: Store, account: str, region: str, name: str) -> dict[str, str]:
    """What a node of a cache using group `name` runs with besides its defaults: redis/valkey
    config directives, or memcached command-line flags. A group not stored (a default group no
    one has described yet) is all defaults: nothing."""
    rec = store.get(ResourceKey(CacheParameterGroup.KIND, account, region, name), CacheParameterGroup)
    if rec is None:
        return {}
    params = catalogue(rec.spec.family)
    changed = {n: v for n, v in rec.spec.values.items()
               if n in params and params[n].directive is not None and v != params[n].default}
    if engine_of(rec.spec.family) == "memcached":
        return memcached_params.command_line(changed)
    return {params[n].directive or n: v for n, v in changed.items()}


def plan_changes(family: str, running: Mapping[str, str], wanted: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """How a running node gets from the engine settings it runs with to the group's: (the redis
    config changes to make live, a directive no longer set going back to its default; whether the
    rest needs a restart). Memcached takes its options at start only."""
    if dict(running) == dict(wanted):
        return {}, False
    if engine_of(family) == "memcached" or family not in FAMILIES:
        return {}, True
    by_directive = {p.directive: p for p in catalogue(family).values() if p.directive}
    live: dict[str, str] = {}
    reboot = False
    for directive in sorted(set(running) | set(wanted)):
        value = wanted.get(directive)
        if running.get(directive) == value:
            continue
        param = by_directive.get(directive)
        if param is None or param.change_type != IMMEDIATE:
            reboot = True
        else:
            live[directive] = value if value is not None else param.default
    return live, reboot


def after_live(running: Mapping[str, str], wanted: Mapping[str, str], live: Mapping[str, str]) -> dict[str, str]:
    """What a node runs with once the `live` changes towards `wanted` are made."""
    out = {k: v for k, v in running.items() if k not in live}
    out.update({k: wanted[k] for k in live if k in wanted})
    return out
