"""Serverless caches (state/serverless.py): keyroute in front of the cache's own cluster-mode
replication group, which the replication group reconciler builds and keeps (failover, node
replacement). Each pass: the group is asked for (the handlers did) and waited for; the endpoint
and reader endpoint have addresses; keyroute listens on both with a certificate from the
service's CA, seeded with the group's nodes (it follows failovers itself: MOVED, and the slot map
read again); then the cache is `available`. Deleting: keyroute stops, the group goes, then the
record. keyroute processes are this process's children; one left by an earlier run of the
service is stopped at startup (KeyRoute.start stops what its pid file names)."""

from __future__ import annotations

import logging
from pathlib import Path

from controlplane.reconciler.errors import PermanentError, Requeue
from controlplane.reconciler.infra import Infra, KeyRouteHub
from controlplane.state.events import EventLog
from controlplane.state.members import members_of
from controlplane.state.records import ReplicationGroup, ResourceKey
from controlplane.state.serverless import ServerlessCache, backing_region
from controlplane.state.store import Store
from engine import KeyRouteConfig, ProxyError

log = logging.getLogger("elasticache_local.reconciler")

WAIT = 0.2  # seconds between looks at shards still being built or removed
KIND = "serverless-cache"  # the event source type


def route_name(of: ServerlessCache | ResourceKey) -> str:
    key = of.key if isinstance(of, ServerlessCache) else of
    return f"{key.account}-{key.region}-{key.id}"


class ServerlessReconciler:
    kind = ServerlessCache.KIND

    def __init__(self, store: Store, infra: Infra, events: EventLog) -> None:
        self._store = store
        self._infra = infra
        self._events = events

    def startup(self) -> None:
        return None  # keyroutes left by an earlier run are stopped when started again (pid files)

    def fail(self, key: ResourceKey, message: str) -> None:
        log.warning("serverless cache %s: %s", key.id, message)

        def failed(r: ServerlessCache) -> None:
            if r.status.phase == "creating":
                r.status.phase, r.status.error = "create-failed", message

        self._store.update(key, ServerlessCache, failed)

    def reconcile(self, key: ResourceKey) -> None:
        rec = self._store.get(key, ServerlessCache)
        if rec is None:
            self._stop(key)
            return
        group = self._store.get(ResourceKey(ReplicationGroup.KIND, rec.account, backing_region(rec.region), rec.id),
                                ReplicationGroup)
        if rec.spec.deleting:
            self._stop(rec.key)
            if group is not None:
                raise Requeue(f"its shards ({group.id}) are being deleted", delay=WAIT)
            self._store.delete(key)
            self._emit(rec, f"Serverless cache {rec.id} deleted")
            return
        if group is None:
            raise PermanentError("the replication group of its shards is gone")
        if group.api_status() != "available":
            raise Requeue(f"its shards are {group.api_status()}", delay=WAIT)
        rec = self._addresses(rec)
        self._route(rec, group)
        was = rec.status.phase
        shards = len(group.spec.node_groups) if group.spec.node_groups else 1

        def ready(r: ServerlessCache) -> None:
            r.status.phase, r.status.shards, r.status.error = "available", shards, None
            r.observed_generation = r.generation

        self._store.update(key, ServerlessCache, ready)
        if was != "available":
            self._emit(rec, f"Serverless cache {rec.id} is available")

    # ---- the endpoint ---------------------------------------------------------------------

    def _addresses(self, rec: ServerlessCache) -> ServerlessCache:
        if rec.status.endpoint_host is not None:
            return rec
        port, _ = rec.ports()
        infra = self._infra
        with infra.alloc_lock:
            host, _ = infra.allocate(infra.endpoint_addresses, port, self._store)

            def give(r: ServerlessCache) -> None:
                r.status.endpoint_host = host

            updated = self._store.update(rec.key, ServerlessCache, give)
        if updated is None:
            raise Requeue("the record vanished", delay=WAIT)
        return updated

    def _route(self, rec: ServerlessCache, group: ReplicationGroup) -> None:
        routes = self._routes()
        seeds = sorted((n.host, n.port) for m in members_of(self._store, group) for n in m.status.nodes)
        host = rec.status.endpoint_host
        assert host is not None
        port, reader_port = rec.ports()
        tls = self._infra.endpoint_tls([host])
        config = KeyRouteConfig(listen=[(host, port)], readers=[(host, reader_port)], seeds=seeds,
                                cert_file=Path(tls.cert_file), key_file=Path(tls.key_file))
        try:
            routes.ensure(route_name(rec), config)
            routes.limit(route_name(rec), rec.spec.limits.ecpu_max)  # AWS throttles past it
        except (ProxyError, OSError) as exc:
            raise Requeue(f"keyroute did not start: {exc}", delay=WAIT) from exc

    def _routes(self) -> KeyRouteHub:
        if self._infra.key_routes is None:
            raise PermanentError("this service runs no keyroute (the serverless caches' endpoint)")
        return self._infra.key_routes

    def _stop(self, key: ResourceKey) -> None:
        if self._infra.key_routes is not None:
            self._infra.key_routes.stop(route_name(key))

    def _emit(self, rec: ServerlessCache, message: str) -> None:
        self._events.emit(rec.account, rec.region, KIND, rec.id, message)
