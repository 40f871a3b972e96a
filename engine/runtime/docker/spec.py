"""What a node's container is made of: its name, labels, command and memory limit.

Containers and their data volumes carry labels, so a runtime finds its own nodes (and only
those) after a restart of the control plane:
  elasticache-local.owner    which runtime owns it (a hash of the owner's data directory)
  elasticache-local.name     the node name;  .engine / .version  what it runs
  elasticache-local.config   the NodeConfig as JSON (re-adoption, probes, restarts)
  elasticache-local.<label>  every NodeConfig label (e.g. .cluster=web, .node=0001)
Container and volume are both named `elasticache-local-<owner>-<node name>`.

No config file goes into a container: redis/valkey take every directive as `--name value`
arguments, but for a node's security files (ACL users, TLS copies, the admin password:
secure.py), put into its volume before each start.
Memory: `maxmemory` / memcached -m is the node's memory, and the container gets that plus a
headroom (fork for BGSAVE, buffers) as its hard limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shlex
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any, Literal

from engine.adapters import ENGINES
from engine.adapters import memcached as memcached_adapter
from engine.adapters import redis as redis_adapter
from engine.adapters.redis_security import TLS_COPIES
from engine.runtime.base import NodeConfig, NodeInfo, NodeState, config_from_dict, config_to_dict, node_info
from engine.runtime.docker.secure import SECRET_DIRECTIVES, SECRETS_FILE

__all__ = [
    "DATA_PATH",
    "LABEL",
    "LIVE",
    "SERVERS",
    "NetworkMode",
    "check_labels",
    "container_name",
    "image_runs_as_root",
    "labels",
    "memory_limit_mb",
    "node_command",
    "node_info_of",
    "owner_filter",
    "owner_for",
    "stored_config",
]

log = logging.getLogger(__name__)

LABEL = "elasticache-local"
L_OWNER = f"{LABEL}.owner"
L_OWNER_NOTE = f"{LABEL}.data-dir"
L_NAME = f"{LABEL}.name"
L_ENGINE = f"{LABEL}.engine"
L_VERSION = f"{LABEL}.version"
L_CONFIG = f"{LABEL}.config"
_RESERVED = frozenset({"owner", "data-dir", "name", "engine", "version", "config", "image"})

DATA_PATH = PurePosixPath("/data")
NetworkMode = Literal["host", "ports"]
SERVERS = {"redis": "redis-server", "valkey": "valkey-server", "memcached": "memcached"}
LIVE = ("running", "paused", "restarting")  # container states of a node that has not exited


def owner_for(key: str) -> str:
    """A short stable id for an owner (the control plane passes its data directory), so two
    services on one Docker engine never see each other's containers."""
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def container_name(owner: str, name: str) -> str:
    return f"{LABEL}-{owner}-{name}"


def memory_limit_mb(memory_mb: int) -> int:
    """The container's hard memory limit for a node with `memory_mb` of cache memory: redis
    needs room beyond maxmemory (a fork's copy-on-write during BGSAVE and full syncs, client and
    replication buffers), as the managed service reserves 25% of a node's memory for them."""
    return memory_mb + max(64, memory_mb // 4)


def node_command(config: NodeConfig, *, network: NetworkMode = "host", runs_as_root: bool = False) -> list[str]:
    """The container command of a node (no config file: redis/valkey take every directive as
    `--name value` arguments, so nothing has to be copied into the container). Redis logs to
    stdout (`docker logs`), keeps its data in /data, and writes no pid file.
    Raises ValueError for invalid settings."""
    server = SERVERS.get(config.engine)
    if server is None:
        raise ValueError(f"unknown engine {config.engine!r} (known: {', '.join(ENGINES)})")
    tls = config.security.tls if config.security is not None else None
    if tls is not None and tls.mode == "preferred":
        raise ValueError("TLS mode preferred is not available on the docker runtime yet (its forwarder runs "
                         "with the process runtime): use mode required, or the process runtime")
    if config.security is not None and config.security.iam_realm is not None:
        raise ValueError("IAM users are not available on the docker runtime yet (their authenticator runs with "
                         "the process runtime): use the process runtime")
    if config.engine == "memcached":
        listen = dataclasses.replace(config, host="0.0.0.0") if network == "ports" else config
        copies = (str(DATA_PATH / TLS_COPIES[0]), str(DATA_PATH / TLS_COPIES[1]))
        return memcached_adapter.argv(listen, server, pidfile=None, run_as_root=runs_as_root, tls_files=copies)
    args = [server]
    if config.security is not None:
        args += ["--include", str(DATA_PATH / SECRETS_FILE)]
    for line in redis_adapter.render_config(config, DATA_PATH, tls_copied=True).splitlines():
        if not line or line.startswith("#"):
            continue
        key, *values = shlex.split(line)
        if key == "pidfile" or (config.security is not None and key in SECRET_DIRECTIVES):
            continue
        if key == "logfile":
            values = [""]
        elif key == "bind" and network == "ports":
            # The node's own namespace: the published port reaches it on any address there.
            values = ["0.0.0.0"]
        for value in values:
            if value.startswith("--"):  # would start another directive on the command line
                raise ValueError(f"invalid value {value!r} for {key!r}: must not start with '--'")
        args += [f"--{key}", *values]
    return args


def check_labels(config: NodeConfig) -> list[str]:
    """The node's labels that cannot be container labels (reserved, or not a label name)."""
    return sorted(k for k in config.labels if k in _RESERVED or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", k))


def labels(config: NodeConfig, owner: str, owner_note: str) -> dict[str, str]:
    """The labels of a node's container and volume."""
    found = {f"{LABEL}.{k}": str(v) for k, v in config.labels.items()}
    found.update({
        L_OWNER: owner,
        L_NAME: config.name,
        L_ENGINE: config.engine,
        L_VERSION: config.version,
        L_CONFIG: json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":")),
    })
    if owner_note:
        found[L_OWNER_NOTE] = owner_note
    return found


def owner_filter(owner: str) -> dict[str, list[str]]:
    """The Docker API filter for an owner's containers and volumes."""
    return {"label": [f"{L_OWNER}={owner}"]}


def stored_config(attrs: Mapping[str, Any]) -> NodeConfig | None:
    """The NodeConfig in a container's or volume's labels (None: not readable)."""
    found = (attrs.get("Config") or {}).get("Labels") if "Config" in attrs else attrs.get("Labels")
    text = (found or {}).get(L_CONFIG)
    if not text:
        return None
    try:
        return config_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring a container/volume with an unreadable %s label: %s", L_CONFIG, exc)
        return None


def node_info_of(config: NodeConfig, attrs: Mapping[str, Any] | None) -> NodeInfo:
    """What the runtime reports of a node with container `attrs` (None: it has none)."""
    if attrs is None or attrs["State"].get("Status") not in LIVE:
        return node_info(config, NodeState.EXITED, None)
    state = attrs["State"]
    return node_info(config, NodeState.PAUSED if state.get("Paused") else NodeState.RUNNING,
                     int(state.get("Pid") or 0) or None)


def image_runs_as_root(user: str | None) -> bool:
    """Whether an image's Config.User is root (memcached then needs `-u root`)."""
    name = (user or "").split(":")[0]
    return name in ("", "root", "0")
