"""create_app: builds every part of the service from settings. No globals anywhere."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

import engine
from controlplane.admin.api import API_DESCRIPTION, API_TITLE, API_VERSION, admin_router
from controlplane.admin.broadcast import Broadcaster
from controlplane.admin.faults import FaultInjector
from controlplane.admin.feed import Feed
from controlplane.admin.nodes import NodeStats
from controlplane.auth.access import build_access
from controlplane.auth.guard import AdminGuard
from controlplane.auth.iam_token import build_iam_verifier
from controlplane.auth.keys import AccessConfigError
from controlplane.auth.resources import store_tags
from controlplane.clock import Clock, RealClock
from controlplane.dashboard import routes as dashboard
from controlplane.handlers.context import Services
from controlplane.handlers.registry import all_handlers
from controlplane.metrics import Metrics, NodeSampler
from controlplane.metrics import install as install_metrics
from controlplane.objectstore import object_store
from controlplane.protocol.model import ApiModel
from controlplane.query import QueryApi
from controlplane.reconciler.backups import Backups
from controlplane.reconciler.cache_clusters import CacheClusterReconciler
from controlplane.reconciler.controller import Controller
from controlplane.reconciler.global_datastores import GlobalDatastoreReconciler
from controlplane.reconciler.health import HealthMonitor
from controlplane.reconciler.infra import EndpointHub, Infra, KeyRouteHub
from controlplane.reconciler.jobs import Jobs
from controlplane.reconciler.replication_groups import ReplicationGroupReconciler
from controlplane.reconciler.restores import Restores
from controlplane.reconciler.security import NodeSecrets
from controlplane.reconciler.serverless import ServerlessReconciler
from controlplane.reconciler.service_updates import ServiceUpdates, WithServiceUpdates
from controlplane.reconciler.snapshots import SnapshotReconciler
from controlplane.reconciler.timewarp import TimeWarp
from controlplane.reconciler.users import UserGroupReconciler, UserReconciler
from controlplane.reconciler.workqueue import WorkQueue
from controlplane.service import Service
from controlplane.settings import Settings
from controlplane.state.events import EventLog
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store
from engine import AddressAllocator, KeyRoutes, NodeRuntime, ProxyHub, loopback_aliases_work, private_dir

log = logging.getLogger("elasticache_local")


def build_runtime(settings: Settings) -> NodeRuntime:
    if settings.runtime == "docker":
        data_dir = str(settings.data_dir.resolve())
        try:
            return engine.docker_runtime(
                data_dir=data_dir,
                base_url=settings.docker_host,
                network=settings.docker_network,
                images={"redis": settings.docker_image_redis, "valkey": settings.docker_image_valkey,
                        "memcached": settings.docker_image_memcached},
                pull=settings.docker_pull,
                versions=settings.docker_versions,
            )
        except (engine.RuntimeError_, ValueError) as exc:
            raise SystemExit(f"elasticache-local: {exc}") from exc
    return engine.process_runtime(settings.data_dir / "nodes", settings.binary_paths)


def build_hub(settings: Settings) -> tuple[ProxyHub, str]:
    """The endpoint hub, and the name of the L4 proxy behind its TCP forwarders."""
    if settings.l4_proxy == "builtin":
        return ProxyHub(), "builtin"
    hub = engine.haproxy_hub(settings.data_dir / "proxy", settings.binary_paths)
    if hub is None:
        if settings.l4_proxy == "haproxy":
            raise SystemExit("elasticache-local: l4_proxy is haproxy but no haproxy binary is installed "
                             "(Debian/Ubuntu: apt-get install haproxy; macOS: brew install haproxy)")
        log.warning("no haproxy binary: proxied endpoints (engines before 7.0, ports addressing) use the "
                    "built-in asyncio forwarder, which is slower (apt-get install haproxy)")
        return ProxyHub(), "builtin"
    return hub, "haproxy"


def addressing_mode(settings: Settings) -> str:
    if settings.addressing != "auto":
        return settings.addressing
    host = settings.node_network.split("/")[0].rsplit(".", 1)[0] + ".1"
    return "loopback" if loopback_aliases_work(host) else "ports"


def build_service(settings: Settings, runtime: NodeRuntime | None = None, clock: Clock | None = None,
                  hub: EndpointHub | None = None, key_routes: KeyRouteHub | None = None) -> Service:
    private_dir(settings.data_dir)  # node data, passwords and keys live under it: this user only
    clock = clock or RealClock()
    store = Store(settings.data_dir / "state.sqlite3")
    try:  # before the runtime: a bad credentials or policy file stops here, nothing started
        access = build_access(settings, store_tags(store))
        iam = build_iam_verifier(settings, store)
    except AccessConfigError as exc:
        store.close()
        raise SystemExit(f"elasticache-local: {exc}") from exc
    runtime = runtime or build_runtime(settings)
    # The IAM authenticators in front of nodes with IAM users check tokens with it.
    runtime.set_iam_verifier(iam.verify_realm)
    events = EventLog(store, clock)
    mode = addressing_mode(settings)
    low, high = settings.port_bounds()
    node_addresses = AddressAllocator(mode, network=settings.node_network, port_range=(low, high))  # type: ignore[arg-type]
    endpoint_addresses = AddressAllocator(mode, network=settings.endpoint_network,  # type: ignore[arg-type]
                                          port_range=(low, high))
    if hub is None:
        hub, l4_proxy = build_hub(settings)
    else:
        l4_proxy = "external"  # a hub the caller made (tests)
    infra = Infra(runtime=runtime, node_addresses=node_addresses, endpoint_addresses=endpoint_addresses,
                  hub=hub, strict_versions=settings.strict_engine_versions,
                  secrets=NodeSecrets.under(settings.data_dir, settings.memcached_sasl_file),
                  key_routes=key_routes or KeyRoutes(settings.data_dir / "serverless"))
    queue: WorkQueue[ResourceKey] = WorkQueue(clock.monotonic)
    metrics = Metrics(NodeSampler(store, runtime, settings.metrics_interval))
    controller = Controller(store, queue, workers=settings.workers, resync_interval=settings.resync_interval,
                            observe=metrics.observe_reconcile)
    health = HealthMonitor(runtime, lambda key, _name: controller.enqueue(key), interval=settings.health_interval,
                           down_after=settings.down_after, slow_interval=settings.standalone_health_interval,
                           monotonic=clock.monotonic)
    objects = object_store(settings.s3_endpoint_url, settings.exports_dir, settings.region)
    restores = Restores(settings.snapshots_dir, settings.data_dir / "restores", objects)
    backups = Backups(store, clock, controller.enqueue)
    clusters = CacheClusterReconciler(store, infra, events, clock, controller.enqueue, health, restores=restores,
                                      backups=backups)
    groups = ReplicationGroupReconciler(store, infra, events, clock, health, restores=restores, backups=backups,
                                        failover_timeout=settings.failover_timeout,
                                        failover_cooldown=settings.failover_cooldown,
                                        observer=metrics.observe_failover, enqueue=controller.enqueue)
    updates = ServiceUpdates(store, events, clock, runtime.available_versions, controller.enqueue)
    controller.register(WithServiceUpdates(clusters, updates))
    controller.register(WithServiceUpdates(groups, updates))
    controller.register(updates)
    jobs = Jobs(controller.enqueue)
    controller.register(SnapshotReconciler(store, infra, events, clock, controller.enqueue, jobs,
                                           snapshots_dir=settings.snapshots_dir, objects=objects,
                                           save_timeout=settings.snapshot_timeout))
    controller.register(UserReconciler(store))
    controller.register(UserGroupReconciler(store, controller.enqueue))
    controller.register(GlobalDatastoreReconciler(store, infra, events, controller.enqueue))
    controller.register(ServerlessReconciler(store, infra, events))
    api = ApiModel()
    services = Services(store=store, events=events, clock=clock, settings=settings,
                        enqueue=controller.enqueue, available_versions=runtime.available_versions,
                        tls_modes=runtime.tls_modes, objects=objects)
    query = QueryApi(api, all_handlers(), services, on_browser=dashboard.front_page, observe=metrics.observe_query,
                     access=access)
    feed = Broadcaster()
    Feed(feed, store, clock).attach(events, health)
    return Service(settings=settings, api=api, store=store, events=events, clock=clock, runtime=runtime,
                   hub=hub, controller=controller, clusters=clusters, groups=groups, infra=infra,
                   health=health, faults=FaultInjector(store, infra, events, clock, controller.enqueue),
                   services=services, query=query, jobs=jobs,
                   timewarp=TimeWarp(store, controller, clock, settings.advance_step_timeout),
                   feed=feed, node_stats=NodeStats(runtime),
                   addressing=mode, metrics=metrics, l4_proxy=l4_proxy,
                   closers=[infra.key_routes.close] if infra.key_routes is not None else [])


def create_app(settings: Settings, runtime: NodeRuntime | None = None, clock: Clock | None = None) -> FastAPI:
    service = build_service(settings, runtime, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    # /docs is the dashboard's (Swagger UI from the package, no CDN); ReDoc has no local copy.
    app = FastAPI(title=API_TITLE, version=API_VERSION, description=API_DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.service = service
    app.router.add_route("/", service.query.endpoint, methods=["GET", "POST"], include_in_schema=False)
    app.include_router(admin_router())
    install_metrics(app, service.metrics)
    dashboard.install(app)
    if settings.guard_admin:
        token = settings.admin_token.get_secret_value() if settings.admin_token else None
        app.add_middleware(AdminGuard, token=token)
    return app
