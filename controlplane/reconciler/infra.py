"""What the reconcilers act on: the node runtime, address allocators, the endpoint hub, and the
translation from AWS words (cluster, node type, engine version) to engine words (node config)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from controlplane import catalog
from controlplane.reconciler.errors import PermanentError
from controlplane.reconciler.security import NodeSecrets
from controlplane.state.acl import NodeAcl
from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.serverless import ServerlessCache
from controlplane.state.store import Store
from engine import (
    AddressAllocator,
    KeyRouteConfig,
    Member,
    NodeConfig,
    NodeRuntime,
    NodeSecurity,
    RuntimeError_,
    TlsFiles,
)


class EndpointHub(Protocol):
    """What the service needs of engine.proxy.hub.ProxyHub (tests pass a recording fake)."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    def add_memcached_config_endpoint(self, name: str, host: str, port: int, members: Sequence[Member] = (),
                                      tls: TlsFiles | None = None) -> None: ...

    def set_members(self, name: str, members: Sequence[Member]) -> None: ...

    def remove(self, name: str) -> None: ...

    def add_tcp_forwarder(self, name: str, host: str, port: int, target: tuple[str, int] | None) -> None: ...

    def set_target(self, name: str, target: tuple[str, int] | None, *, drop_existing: bool = False) -> None: ...


class KeyRouteHub(Protocol):
    """What the service needs of engine.proxy.keyroute.KeyRoutes (tests pass a recording fake)."""

    def ensure(self, name: str, config: KeyRouteConfig) -> None: ...

    def refresh(self, name: str) -> None: ...

    def limit(self, name: str, ecpu_per_second: int | None) -> None: ...

    def stop(self, name: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class Infra:
    runtime: NodeRuntime
    node_addresses: AddressAllocator
    endpoint_addresses: AddressAllocator
    hub: EndpointHub
    strict_versions: bool = False
    # Held while choosing an address and recording it, so two workers never pick the same one.
    alloc_lock: threading.Lock = field(default_factory=threading.Lock)
    # Runtime node name -> the resource whose reconcile acts on it (a cluster, or the
    # replication group of a member cluster); the runtime's exit notifications go there.
    node_owner: dict[str, ResourceKey] = field(default_factory=dict)
    # Availability zones interrupted by fault injection -> until when (clock.monotonic()).
    down_azs: dict[str, float] = field(default_factory=dict)
    # The admin user, the CA and the SASL users that secure the nodes of caches with TLS or
    # memcached SASL (None: no such cache can start; unit tests that need none leave it out).
    secrets: NodeSecrets | None = None
    key_routes: KeyRouteHub | None = None  # keyroute processes (serverless caches' endpoints)

    def az_down(self, az: str, now: float) -> bool:
        until = self.down_azs.get(az)
        return until is not None and now < until

    def node_security(self, acl: NodeAcl, names: Sequence[str], plain_link: bool = False) -> NodeSecurity | None:
        """The NodeSecurity of a node of a cache asking `acl`, its certificate for `names`
        (`plain_link`: it replicates in plain text, NodeStatus.plain_link)."""
        if not acl.tls and not acl.sasl:
            return None
        if self.secrets is None:
            raise PermanentError("this service has no CA and admin user to secure nodes with")
        try:
            return self.secrets.security(acl, names, plain_link)
        except (OSError, ValueError) as exc:
            raise PermanentError(f"cannot secure the node: {exc}") from exc

    def endpoint_tls(self, names: Sequence[str]) -> TlsFiles:
        """TLS files for an endpoint the hub serves (a memcached configuration endpoint)."""
        if self.secrets is None:
            raise PermanentError("this service has no CA to secure endpoints with")
        try:
            return self.secrets.tls_files(names)
        except (OSError, ValueError) as exc:
            raise PermanentError(f"cannot secure the endpoint: {exc}") from exc

    def allocate(self, allocator: AddressAllocator, port: int, store: Store) -> tuple[str, int]:
        """A free address for a new node or endpoint; call with alloc_lock held and record the
        result before releasing it. In loopback mode every node and endpoint has an address of
        its own, whatever its port, as in AWS."""
        used: set[tuple[str, int]] = set()
        for rec in store.records(CacheCluster):
            used.update((n.host, n.port) for n in rec.status.nodes)
            if rec.status.config_host is not None and rec.status.config_port is not None:
                used.add((rec.status.config_host, rec.status.config_port))
        for rg in store.records(ReplicationGroup):
            for host, rg_port in ((rg.status.primary_host, rg.status.primary_port),
                                  (rg.status.reader_host, rg.status.reader_port),
                                  (rg.status.config_host, rg.status.config_port)):
                if host is not None:
                    used.add((host, rg_port or rg.spec.port))
        for cache in store.records(ServerlessCache):
            if cache.status.endpoint_host is not None:
                used.update((cache.status.endpoint_host, p) for p in cache.ports())
        if allocator.mode == "loopback":
            used |= {(host, port) for host, _ in used}
        try:
            return allocator.allocate(port, used)
        except RuntimeError_ as exc:
            raise PermanentError(str(exc)) from exc


def node_name(account: str, region: str, cluster_id: str, node_id: str) -> str:
    """The runtime's name for a node: unique across accounts and regions, filesystem safe."""
    return f"{account}-{region}-{cluster_id}-{node_id}"


def endpoint_name(account: str, region: str, cluster_id: str, kind: str) -> str:
    return f"{account}-{region}-{cluster_id}-{kind}"


def build_node_config(
    *,
    name: str,
    engine: str,
    version: str,
    host: str,
    port: int,
    node_type: str,
    labels: Mapping[str, str],
    settings: Mapping[str, str] | None = None,
    security: NodeSecurity | None = None,
    parameters: Mapping[str, str] | None = None,
) -> NodeConfig:
    """`parameters`: the parameter group's engine settings; `settings` (replication, addresses)
    are the service's own and win over them."""
    spec = catalog.NODE_TYPES[node_type]
    threads = min(spec.vcpus, catalog.MAX_MEMCACHED_THREADS) if engine == "memcached" else 1
    return NodeConfig(
        name=name,
        engine=engine,
        version=version,
        host=host,
        port=port,
        memory_mb=spec.memory_mb,
        threads=threads,
        labels=dict(labels),
        settings={**(parameters or {}), **(settings or {})},
        security=security,
    )
