"""Which installed engine binary a cache's nodes run, and where a standalone cluster's nodes go
when no zone was asked for."""

from __future__ import annotations

from controlplane import catalog
from controlplane.catalog import resolve_version
from controlplane.reconciler.errors import PermanentError
from controlplane.reconciler.infra import Infra
from controlplane.state.records import CacheCluster
from controlplane.state.service_updates import pin
from controlplane.state.store import Store


def choose_version(store: Store, infra: Infra, rec: CacheCluster) -> tuple[str, bool, bool]:
    """The installed version the nodes run, whether it is the one asked for, whether a service
    update is applied (service_updates.pin: a newly installed patch waits for its update)."""
    available = infra.runtime.available_versions()
    wanted = rec.target().engine_version
    chosen, exact = resolve_version(rec.spec.engine, wanted, available, infra.strict_versions)
    if chosen is None:
        raise PermanentError(
            f"No {rec.spec.engine} {wanted} can run on this machine "
            f"(installed: {', '.join(available.get(rec.spec.engine, ())) or 'none'})"
        )
    version, updating = pin(store, rec, chosen, available.get(rec.spec.engine, ()))
    return version, exact, updating


def default_azs(rec: CacheCluster) -> list[str]:
    """The zones a cluster's nodes take: those asked for, else one (or, cross-AZ, all) of the
    region's, starting from one derived from its id (AWS's choice is stable for a cluster)."""
    if rec.spec.preferred_azs:
        return rec.spec.preferred_azs
    zones = catalog.availability_zones(rec.region)
    start = sum(rec.id.encode()) % len(zones)
    rotated = zones[start:] + zones[:start]
    return rotated if rec.spec.az_mode == "cross-az" else rotated[:1]
