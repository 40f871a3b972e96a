"""NodeRuntime on Docker: one container per node, through the Docker SDK for Python.

Containers and their data volumes carry labels, so a runtime finds its own nodes (and only
those) after a restart of the control plane:
  elasticache-local.owner    which runtime owns it (a hash of the owner's data directory)
  elasticache-local.name     the node name;  .engine / .version  what it runs
  elasticache-local.config   the NodeConfig as JSON (re-adoption, probes, restarts)
  elasticache-local.<label>  every NodeConfig label (e.g. .cluster=web, .node=0001)
Container and volume are both named `elasticache-local-<owner>-<node name>`.

Networking: "host" (default, Linux) runs each node in the host's network and pid namespaces,
so a node listens on its own loopback address and standard port exactly as a process node does
(extra `bind` addresses can be added at run time), its INFO `process_id` is a host pid, and
nothing sits in the data path (publishing with -p goes through docker-proxy and halves redis
throughput). "ports" (Docker Desktop, no host networking) publishes the node's port on the
node's address (127.0.0.1 there) and the node binds 0.0.0.0 inside its own namespace.

Data lives on a named volume per node mounted at /data: a stopped or killed node is started
again on the same container and volume, so redis comes back with its dump.rdb; `remove`
deletes both. Memory: `maxmemory` / memcached -m is the node's memory, and the container gets
that plus a headroom (fork for BGSAVE, buffers) as its hard limit.

Exits are noticed without polling: one thread reads Docker's event stream (die events of this
owner's containers) and calls the exit listener at once; after the daemon's stream breaks it
reconnects and replays what it missed (`since`).

Images: one per engine and version, from templates such as "redis:{version}" (official images,
pulled on first use with progress in the log) or "elasticache-local/redis:{version}" (built from
the OS's binaries by deploy/build-images.sh, with pulling off).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import re
import shlex
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, Literal

import docker
import docker.errors
import requests
from docker.types import LogConfig, Mount
from docker.utils import parse_repository_tag

from engine.adapters import ENGINES
from engine.adapters import memcached as memcached_adapter
from engine.adapters import redis as redis_adapter
from engine.addresses import bind_error
from engine.runtime.base import (
    PROBE_PAUSE,
    ExitListener,
    NodeConfig,
    NodeInfo,
    NodeState,
    ProbeResult,
    RuntimeError_,
    config_from_dict,
    config_to_dict,
)
from engine.runtime.commands import TcpNodeCommands
from engine.runtime.process import _address_error
from engine.versions import parse_version

__all__ = [
    "DATA_PATH",
    "LABEL",
    "DockerRuntime",
    "container_name",
    "memory_limit_mb",
    "node_command",
    "owner_for",
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

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SERVERS = {"redis": "redis-server", "valkey": "valkey-server", "memcached": "memcached"}
_KILL_WAIT = 5.0
# How long kill/stop wait for the exit listener to have run: Docker's die event can lag the exit
# by seconds when the engine is busy (8 containers started and killed at once on 2 loaded cores).
_LISTENER_WAIT = 5.0
_VERSIONS_TTL = 5.0  # available_versions: refreshed in the background when older
_RECONNECT_MAX = 5.0  # event stream: the longest pause between reconnection attempts
_LIVE = ("running", "paused", "restarting")


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
    server = _SERVERS.get(config.engine)
    if server is None:
        raise ValueError(f"unknown engine {config.engine!r} (known: {', '.join(ENGINES)})")
    if config.engine == "memcached":
        listen = dataclasses.replace(config, host="0.0.0.0") if network == "ports" else config
        return memcached_adapter.argv(listen, server, pidfile=None, run_as_root=runs_as_root)
    args = [server]
    for line in redis_adapter.render_config(config, DATA_PATH).splitlines():
        if not line or line.startswith("#"):
            continue
        key, *values = shlex.split(line)
        if key == "pidfile":
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


def _image_runs_as_root(user: str | None) -> bool:
    name = (user or "").split(":")[0]
    return name in ("", "root", "0")


def _version_key(version: str) -> tuple[int, ...]:
    return parse_version(version)


def _normalize_ref(ref: str) -> str:
    """"docker.io/library/redis:7" and "redis:7" name the same image (RepoTags say the latter)."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    if ref.startswith("library/"):
        ref = ref[len("library/") :]
    return ref


def _template_pattern(template: str) -> re.Pattern[str]:
    before, _, after = _normalize_ref(template).partition("{version}")
    return re.compile(re.escape(before) + r"(?P<version>\d+(?:\.\d+)*)" + re.escape(after) + "$")


def _config_json(config: NodeConfig) -> str:
    return json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))


def _docker_error(what: str, exc: BaseException) -> RuntimeError_:
    """A Docker failure as a runtime error: the daemon being away or busy may pass (temporary);
    a refused request (bad image, bad argument) will not."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation or str(exc)
        status = exc.status_code or 500
        return RuntimeError_(f"{what}: {explanation}", temporary=status >= 500 or status == 409)
    if isinstance(exc, requests.exceptions.RequestException | OSError | docker.errors.DockerException):
        return RuntimeError_(f"{what}: the Docker engine does not answer ({exc})", temporary=True)
    return RuntimeError_(f"{what}: {exc}")


class DockerRuntime(TcpNodeCommands):
    """NodeRuntime running each node as a Docker container. Thread-safe; operations on one node
    are serialized, operations on different nodes run in parallel (the Docker engine itself
    serializes little). Every call is a blocking Docker API call: callers use worker threads.

    `images`: engine -> image template with "{version}". `pull`: pull a missing image (progress
    in the log); off, only images already present can run. `versions`: engine -> versions
    offered for pulling (with `pull` on; images present locally are always offered too).
    `start_grace` as in ProcessRuntime: start() waits that long for an immediate exit.
    `replicate` and `set_addresses` talk to the node over TCP, as on the process runtime (with
    "ports" networking, extra addresses cannot be bound inside the node's own namespace).
    """

    name = "docker"

    def __init__(
        self,
        *,
        owner: str,
        images: Mapping[str, str],
        base_url: str | None = None,
        network: NetworkMode = "host",
        pull: bool = True,
        versions: Mapping[str, Sequence[str]] | None = None,
        owner_note: str = "",
        start_grace: float = 0.0,
        api_timeout: float = 60.0,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9]{1,32}", owner):
            raise ValueError(f"owner must be 1-32 lowercase letters or digits, not {owner!r}")
        if network not in ("host", "ports"):
            raise ValueError(f"unknown docker network mode {network!r}: use 'host' or 'ports'")
        for engine, template in images.items():
            if engine not in _SERVERS:
                raise ValueError(f"image for unknown engine {engine!r} (known: {', '.join(ENGINES)})")
            if "{version}" not in template:
                raise ValueError(f"image template {template!r} for {engine} must contain '{{version}}'")
        self.owner = owner
        self.network: NetworkMode = network
        self._images = dict(images)
        self._patterns = {engine: _template_pattern(t) for engine, t in self._images.items()}
        self._pull = pull
        self._offered = {e: tuple(v) for e, v in (versions or {}).items() if e in self._images} if pull else {}
        self._owner_note = owner_note
        self._start_grace = start_grace
        self._where = base_url or "the default Docker socket (DOCKER_HOST, docker context, /var/run/docker.sock)"
        self._api = self._connect(base_url, api_timeout)
        self._events_api = self._connect(base_url, api_timeout)  # the long-lived event stream
        self._lock = threading.Lock()  # guards the dicts below
        self._node_locks: dict[str, threading.RLock] = {}
        self._configs: dict[str, NodeConfig] = {}
        self._image_users: dict[str, str] = {}  # image ref -> its Config.User (present images)
        self._image_locks: dict[str, threading.Lock] = {}
        self._versions: dict[str, tuple[str, ...]] = {}
        self._versions_at = -_VERSIONS_TTL
        self._versions_refreshing = False
        self._listener: ExitListener | None = None
        self._closing = threading.Event()
        self._deaths: dict[str, int] = {}  # container id -> die events dispatched
        self._deaths_cond = threading.Condition(self._lock)
        self._stream: Any = None
        self._watcher: threading.Thread | None = None
        self._refresh_versions()

    def _connect(self, base_url: str | None, timeout: float) -> docker.APIClient:
        try:
            if base_url:
                client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout), max_pool_size=32)
            else:
                client = docker.DockerClient.from_env(version="auto", timeout=int(timeout), max_pool_size=32)
            client.api.ping()
        except Exception as exc:
            raise RuntimeError_(
                f"cannot reach the Docker engine at {self._where}: {exc}. Start Docker (on Debian/Ubuntu as root: "
                "deploy/docker-setup.sh), point the docker host setting at it, or use the process runtime",
                temporary=False,
            ) from exc
        return client.api

    # --- NodeRuntime ---

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        """Versions offered for pulling plus versions of images present here, highest first.
        Cached: a stale answer is returned at once and refreshed in the background, so the API
        never waits for the Docker engine."""
        with self._lock:
            versions = dict(self._versions)
            stale = time.monotonic() - self._versions_at > _VERSIONS_TTL and not self._versions_refreshing
            if stale:
                self._versions_refreshing = True
        if stale:
            threading.Thread(target=self._refresh_versions, name="docker-versions", daemon=True).start()
        return versions

    def start(self, config: NodeConfig) -> NodeInfo:
        if not _NAME_RE.match(config.name):
            raise RuntimeError_(f"invalid node name {config.name!r}", temporary=False)
        if config.engine not in self._images:
            raise RuntimeError_(f"no image is configured for engine {config.engine!r}", temporary=False)
        bad = sorted(k for k in config.labels if k in _RESERVED or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", k))
        if bad:
            raise RuntimeError_(f"invalid node label(s) {', '.join(bad)}", temporary=False)
        with self._node_lock(config.name):
            attrs = self._inspect_container(config.name)
            if attrs is not None:
                state = attrs["State"]
                if state.get("Status") in _LIVE:
                    stored = self._stored_config(attrs) or config
                    self._remember(stored)
                    return self._info(stored, attrs)
                if self._stored_config(attrs) == config:
                    return self._start_existing(config, attrs["Id"])
                # Asked for something else (version, node type, address): a new container on
                # the same volume, so the data stays.
                self._call(f"remove the container of node {config.name}", self._api.remove_container, attrs["Id"],
                           force=True)
            return self._create(config)

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after `timeout` (Docker's stop); a paused node is resumed first so it
        can shut down gracefully (redis saves its data). Returns once the exit listener ran."""
        with self._node_lock(name):
            attrs = self._inspect_container(name)
            if attrs is None or attrs["State"].get("Status") not in _LIVE:
                return
            cid = attrs["Id"]
            seen = self._death_count(cid)
            if attrs["State"].get("Paused"):
                with contextlib.suppress(docker.errors.APIError):
                    self._api.unpause(cid)
            self._call(f"stop node {name}", self._api.stop, cid, timeout=max(0, round(timeout)))
            self._await_dispatch(cid, seen)

    def kill(self, name: str) -> None:
        """SIGKILL (a paused container too); returns once the container has exited, so its
        addresses are free, and the exit listener has run."""
        with self._node_lock(name):
            attrs = self._inspect_container(name)
            if attrs is None or attrs["State"].get("Status") not in _LIVE:
                return
            cid = attrs["Id"]
            seen = self._death_count(cid)
            try:
                self._api.kill(cid)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: not running (it has just exited)
                    raise _docker_error(f"kill node {name}", exc) from exc
            except Exception as exc:
                raise _docker_error(f"kill node {name}", exc) from exc
            self._await_not_running(name, cid, _KILL_WAIT)
            self._await_dispatch(cid, seen)

    def pause(self, name: str) -> None:
        """Freeze the container (cgroup freezer): it keeps its sockets but answers nothing."""
        with self._node_lock(name):
            attrs = self._running(name)
            if not attrs["State"].get("Paused"):
                self._call(f"pause node {name}", self._api.pause, attrs["Id"])

    def resume(self, name: str) -> None:
        with self._node_lock(name):
            attrs = self._running(name)
            if attrs["State"].get("Paused"):
                self._call(f"resume node {name}", self._api.unpause, attrs["Id"])

    def remove(self, name: str) -> None:
        """Kill the node and delete its container and its data volume."""
        if not _NAME_RE.match(name):
            return
        with self._node_lock(name):
            self.kill(name)
            attrs = self._inspect_container(name)
            if attrs is not None:
                try:
                    self._api.remove_container(attrs["Id"], force=True)
                except docker.errors.NotFound:
                    pass
                except Exception as exc:
                    raise _docker_error(f"remove the container of node {name}", exc) from exc
            self._remove_volume(name)
            with self._lock:
                self._configs.pop(name, None)

    def inspect(self, name: str) -> NodeInfo | None:
        if not _NAME_RE.match(name):
            return None
        attrs = self._inspect_container(name)
        if attrs is not None:
            config = self._stored_config(attrs)
            if config is None:
                return None
            self._remember(config)
            return self._info(config, attrs)
        # No container (removed from outside, or never created after its volume): the data is
        # still there, and start() brings the node back on it.
        volume = self._inspect_volume(name)
        config = self._stored_config(volume) if volume is not None else None
        if config is None:
            return None
        self._remember(config)
        return self._info(config, None)

    def list_managed(self) -> list[NodeInfo]:
        """Every node of this owner: containers in any state, and data volumes whose container
        is gone."""
        owner_filter = {"label": [f"{L_OWNER}={self.owner}"]}
        containers = self._call("list containers", self._api.containers, all=True, filters=owner_filter)
        volumes = self._call("list volumes", self._api.volumes, filters=owner_filter).get("Volumes") or []
        names = {(c.get("Labels") or {}).get(L_NAME) for c in containers}
        names |= {(v.get("Labels") or {}).get(L_NAME) for v in volumes}
        infos = [self.inspect(n) for n in sorted(n for n in names if n)]
        return [i for i in infos if i is not None]

    def probe(self, name: str, timeout: float) -> ProbeResult:
        try:
            config = self._config_of(name)
        except Exception as exc:  # never raises, by contract
            return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)
        if config is None:
            return ProbeResult(False, None, None, f"no node named {name}", 0.0)
        try:
            password = config.settings.get("requirepass") or None
            if config.engine == "memcached":
                return memcached_adapter.probe(config.host, config.port, timeout)
            return redis_adapter.probe(config.host, config.port, timeout, password=password)
        except Exception as exc:
            return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Containers have no readiness report here (no NOTIFY_SOCKET): a short pause."""
        time.sleep(min(timeout, PROBE_PAUSE))
        return False

    def set_exit_listener(self, listener: ExitListener) -> None:
        """Also starts watching Docker's event stream (connected before this returns, so no exit
        after it is missed)."""
        self._listener = listener
        with self._lock:
            if self._watcher is not None or self._closing.is_set():
                return
        stream = self._open_events(None)
        thread = threading.Thread(target=self._watch_events, args=(stream,), name="docker-events", daemon=True)
        with self._lock:
            self._stream = stream
            self._watcher = thread
        thread.start()

    def close(self) -> None:
        """Stop watching events. Nodes keep running; a new runtime re-adopts them."""
        if self._closing.is_set():
            return
        self._closing.set()
        with self._lock:
            stream, watcher = self._stream, self._watcher
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if watcher is not None:
            watcher.join(timeout=5.0)
        for api in (self._api, self._events_api):
            with contextlib.suppress(Exception):
                api.close()

    # --- extras (not in the protocol) ---

    def restart(self, name: str, timeout: float = 5.0) -> NodeInfo:
        """stop + start on the same container and data."""
        config = self._config_of(name)
        if config is None:
            raise RuntimeError_(f"no node named {name}", temporary=False)
        self.stop(name, timeout)
        return self.start(config)

    def logs(self, name: str, lines: int = 100) -> str:
        """The last lines of the node's output (its log)."""
        attrs = self._inspect_container(name)
        if attrs is None:
            return "(no container)"
        try:
            raw = self._api.logs(attrs["Id"], stdout=True, stderr=True, tail=lines)
        except Exception as exc:
            return f"(no log: {exc})"
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)

    def log_tail(self, name: str, lines: int = 20) -> str:
        return self.logs(name, lines)

    def container_name(self, name: str) -> str:
        return container_name(self.owner, name)

    def image_for(self, engine: str, version: str) -> str:
        return self._images[engine].format(version=version)

    # --- starting ---

    def _create(self, config: NodeConfig) -> NodeInfo:
        image = self.image_for(config.engine, config.version)
        if not self._pull and config.version not in self.available_versions().get(config.engine, ()):
            self._refresh_versions()  # an image may have been built since the last look
        user = self._ensure_image(image, config)
        try:
            command = node_command(config, network=self.network, runs_as_root=_image_runs_as_root(user))
        except ValueError as exc:
            raise RuntimeError_(f"cannot start node {config.name}: {exc}", temporary=False) from exc
        self._check_address(config)
        labels = self._labels(config)
        cname = self.container_name(config.name)
        mount = Mount(target=str(DATA_PATH), source=cname, type="volume", labels=self._volume_labels(config))
        limit = memory_limit_mb(config.memory_mb) * 1024 * 1024
        host_config_args: dict[str, Any] = {
            "mounts": [mount],
            "mem_limit": limit,
            "memswap_limit": limit,  # no swap: a node over its limit is killed, as on a real host
            "log_config": LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"}),
        }
        ports: list[int] | None = None
        if self.network == "host":
            host_config_args.update(network_mode="host", pid_mode="host")
        else:
            host_config_args["port_bindings"] = {config.port: (config.host, config.port)}
            ports = [config.port]
        host_config = self._api.create_host_config(**host_config_args)
        try:
            created = self._api.create_container(
                image, command=command, name=cname, labels=labels, host_config=host_config, ports=ports,
                detach=True, stop_signal="SIGTERM",
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # a container of that name appeared meanwhile (another runtime)
                raise RuntimeError_(f"container {cname} already exists; retrying", temporary=True) from exc
            raise _docker_error(f"create the container of node {config.name}", exc) from exc
        except Exception as exc:
            raise _docker_error(f"create the container of node {config.name}", exc) from exc
        log.info("node %s: created container %s (%s)", config.name, cname, image)
        return self._start_existing(config, created["Id"], checked=True)

    def _start_existing(self, config: NodeConfig, cid: str, *, checked: bool = False) -> NodeInfo:
        if not checked:
            self._check_address(config)
        self._remember(config)
        try:
            self._api.start(cid)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "address already in use" in text or "port is already allocated" in text:
                raise RuntimeError_(
                    f"cannot start node {config.name}: {config.host}:{config.port} is already in use", temporary=True
                ) from exc
            raise _docker_error(f"start node {config.name}", exc) from exc
        except Exception as exc:
            raise _docker_error(f"start node {config.name}", exc) from exc
        attrs = self._inspect_container(config.name)
        deadline = time.monotonic() + self._start_grace
        while attrs is not None and attrs["State"].get("Status") in _LIVE and time.monotonic() < deadline:
            time.sleep(0.02)
            attrs = self._inspect_container(config.name)
        if attrs is None or attrs["State"].get("Status") not in _LIVE:
            code = attrs["State"].get("ExitCode") if attrs else None
            tail = self.logs(config.name, 8)
            raise RuntimeError_(
                f"{config.engine} {config.version} node {config.name} exited at once (code {code}); "
                f"last lines of its log (docker logs {self.container_name(config.name)}):\n{tail}",
                temporary="Address already in use" in tail,
            )
        return self._info(config, attrs)

    def _check_address(self, config: NodeConfig) -> None:
        """In host networking a port already taken is caught before the container starts."""
        if self.network != "host":
            return
        error = bind_error(config.host, config.port)
        if error is not None:
            raise _address_error(config, error)

    def _ensure_image(self, image: str, config: NodeConfig) -> str:
        """The image's user (Config.User); pulls the image first when it is missing and pulling
        is on, logging its progress."""
        with self._lock:
            if image in self._image_users:
                return self._image_users[image]
            lock = self._image_locks.setdefault(image, threading.Lock())
        with lock:  # one pull per image, however many nodes wait for it
            with self._lock:
                if image in self._image_users:
                    return self._image_users[image]
            try:
                attrs = self._api.inspect_image(image)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                if not self._pull:
                    raise RuntimeError_(
                        f"image {image} for {config.engine} {config.version} is not on this Docker engine and "
                        "pulling is off: build the local images with deploy/build-images.sh, or turn pulling on",
                        temporary=False,
                    ) from None
                self._pull_image(image)
                attrs = self._call(f"inspect image {image}", self._api.inspect_image, image)
            except Exception as exc:
                raise _docker_error(f"inspect image {image}", exc) from exc
            user = str((attrs.get("Config") or {}).get("User") or "")
            with self._lock:
                self._image_users[image] = user
            return user

    def _pull_image(self, image: str) -> None:
        repository, tag = parse_repository_tag(image)
        log.info("pulling image %s (first use; progress follows)", image)
        started = time.monotonic()
        last_report = started
        layers: dict[str, tuple[int, int]] = {}
        done: set[str] = set()
        try:
            for event in self._api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise RuntimeError_(f"cannot pull {image}: {event['error']}", temporary=False)
                layer = str(event.get("id") or "")
                status = str(event.get("status") or "")
                detail = event.get("progressDetail") or {}
                milestone = False
                if status == "Downloading" and detail.get("total"):
                    layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
                elif status in ("Pull complete", "Already exists") and layer and layer not in done:
                    done.add(layer)
                    milestone = True
                now = time.monotonic()
                if milestone or now - last_report >= 1.0:  # each layer, and every second
                    last_report = now
                    current = sum(c for c, _ in layers.values()) / 1e6
                    total = sum(t for _, t in layers.values()) / 1e6
                    log.info("pulling %s: %.1f of %.1f MB, %d layer(s) done", image, current, total, len(done))
        except RuntimeError_:
            raise
        except Exception as exc:
            raise RuntimeError_(
                f"cannot pull {image}: {exc}. Without a registry, build local images with deploy/build-images.sh "
                "and point the docker image settings at them",
                temporary=False,
            ) from exc
        log.info("pulled %s in %.1f s", image, time.monotonic() - started)
        self._refresh_versions()

    def _refresh_versions(self) -> None:
        found: dict[str, set[str]] = {engine: set(v) for engine, v in self._offered.items()}
        try:
            images = self._api.images()
        except Exception as exc:
            log.warning("cannot list Docker images: %s", exc)
            images = None
        if images is not None:
            for image in images:
                for tag in image.get("RepoTags") or ():
                    tag = _normalize_ref(str(tag))
                    for engine, pattern in self._patterns.items():
                        match = pattern.match(tag)
                        if match:
                            found.setdefault(engine, set()).add(match.group("version"))
        versions = {e: tuple(sorted(v, key=_version_key, reverse=True)) for e, v in found.items() if v}
        with self._lock:
            if images is not None or not self._versions:
                self._versions = versions
            self._versions_at = time.monotonic()
            self._versions_refreshing = False

    # --- containers ---

    def _labels(self, config: NodeConfig) -> dict[str, str]:
        labels = {f"{LABEL}.{k}": str(v) for k, v in config.labels.items()}
        labels.update({
            L_OWNER: self.owner,
            L_NAME: config.name,
            L_ENGINE: config.engine,
            L_VERSION: config.version,
            L_CONFIG: _config_json(config),
        })
        if self._owner_note:
            labels[L_OWNER_NOTE] = self._owner_note
        return labels

    def _volume_labels(self, config: NodeConfig) -> dict[str, str]:
        return self._labels(config)

    def _inspect_container(self, name: str) -> dict[str, Any] | None:
        """The container of node `name` (ours: owner label checked), or None."""
        cname = self.container_name(name)
        try:
            attrs: dict[str, Any] = self._api.inspect_container(cname)
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise _docker_error(f"inspect node {name}", exc) from exc
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(L_OWNER) != self.owner or labels.get(L_NAME) != name:
            raise RuntimeError_(f"container {cname} exists but is not this service's node {name}", temporary=False)
        return attrs

    def _inspect_volume(self, name: str) -> dict[str, Any] | None:
        try:
            attrs: dict[str, Any] = self._api.inspect_volume(self.container_name(name))
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise _docker_error(f"inspect the volume of node {name}", exc) from exc
        if (attrs.get("Labels") or {}).get(L_OWNER) != self.owner:
            return None
        return attrs

    def _remove_volume(self, name: str) -> None:
        volume = self.container_name(name)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                if self._inspect_volume(name) is None:
                    return
                self._api.remove_volume(volume, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                # 409: still in use by a container being removed; it goes in a moment.
                if exc.status_code != 409 or time.monotonic() > deadline:
                    raise _docker_error(f"delete the data volume of node {name}", exc) from exc
                time.sleep(0.05)
            except Exception as exc:
                raise _docker_error(f"delete the data volume of node {name}", exc) from exc

    def _stored_config(self, attrs: Mapping[str, Any]) -> NodeConfig | None:
        labels = (attrs.get("Config") or {}).get("Labels") if "Config" in attrs else attrs.get("Labels")
        text = (labels or {}).get(L_CONFIG)
        if not text:
            return None
        try:
            return config_from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a container/volume with an unreadable %s label: %s", L_CONFIG, exc)
            return None

    def _info(self, config: NodeConfig, attrs: Mapping[str, Any] | None) -> NodeInfo:
        state = NodeState.EXITED
        pid: int | None = None
        if attrs is not None:
            st = attrs["State"]
            if st.get("Status") in _LIVE:
                state = NodeState.PAUSED if st.get("Paused") else NodeState.RUNNING
                pid = int(st.get("Pid") or 0) or None
        return NodeInfo(
            name=config.name,
            state=state,
            engine=config.engine,
            version=config.version,
            host=config.host,
            port=config.port,
            pid=pid,
            labels=dict(config.labels),
        )

    def _running(self, name: str) -> dict[str, Any]:
        attrs = self._inspect_container(name)
        if attrs is None or attrs["State"].get("Status") not in ("running", "paused"):
            raise RuntimeError_(f"node {name} is not running", temporary=False)
        return attrs

    def _await_not_running(self, name: str, cid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            attrs = self._inspect_container(name)
            if attrs is None or attrs["Id"] != cid or attrs["State"].get("Status") not in _LIVE:
                return
            if time.monotonic() > deadline:
                raise RuntimeError_(f"node {name} did not exit after SIGKILL")
            time.sleep(0.01)

    def _config_of(self, name: str) -> NodeConfig | None:
        with self._lock:
            config = self._configs.get(name)
        if config is not None:
            return config
        info = self.inspect(name)  # remembers the config
        if info is None:
            return None
        with self._lock:
            return self._configs.get(name)

    def _remember(self, config: NodeConfig) -> None:
        with self._lock:
            self._configs[config.name] = config

    def _node_lock(self, name: str) -> threading.RLock:
        with self._lock:
            lock = self._node_locks.get(name)
            if lock is None:
                lock = self._node_locks[name] = threading.RLock()
            return lock

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _docker_error(what, exc) from exc

    # --- exits ---

    def _death_count(self, cid: str) -> int:
        with self._lock:
            return self._deaths.get(cid, 0)

    def _await_dispatch(self, cid: str, seen: int) -> None:
        """Wait until the watcher has passed this container's exit to the listener, so a start()
        that follows cannot be mistaken for this exit (unless we are the listener ourselves)."""
        with self._lock:
            watcher = self._watcher
        if watcher is None or watcher is threading.current_thread() or self._closing.is_set():
            return
        with self._deaths_cond:
            if not self._deaths_cond.wait_for(lambda: self._deaths.get(cid, 0) > seen, timeout=_LISTENER_WAIT):
                log.warning("container %s exited but Docker reported no die event within %.0f s", cid[:12],
                            _LISTENER_WAIT)

    def _open_events(self, since: str | None) -> Any:
        filters = {"type": ["container"], "label": [f"{L_OWNER}={self.owner}"], "event": ["die", "oom"]}
        try:
            return self._events_api.events(since=since, filters=filters, decode=True)  # type: ignore[call-overload]
        except Exception as exc:
            raise _docker_error("watch Docker events", exc) from exc

    def _watch_events(self, stream: Any) -> None:
        last: tuple[int, str] | None = None  # (timeNano, "id action") of the last event handled
        pause = 0.1
        while not self._closing.is_set():
            try:
                for event in self._events(stream):
                    key = (int(event.get("timeNano") or 0), f"{event.get('id')} {event.get('Action')}")
                    if last is not None and key <= last:
                        continue  # replayed after a reconnection
                    last = key
                    self._handle_event(event)
                    pause = 0.1
            except Exception:
                if not self._closing.is_set():
                    log.exception("reading Docker events failed")
            if self._closing.is_set():
                return
            # The stream ended (the Docker engine restarted?): reconnect and replay what we missed.
            self._closing.wait(pause)
            pause = min(pause * 2, _RECONNECT_MAX)
            since = f"{last[0] // 1_000_000_000}.{last[0] % 1_000_000_000:09d}" if last else None
            try:
                stream = self._open_events(since)
            except RuntimeError_ as exc:
                log.warning("Docker event stream lost, reconnecting: %s", exc)
                continue
            with self._lock:
                self._stream = stream
            if self._closing.is_set():
                with contextlib.suppress(Exception):
                    stream.close()
                return
            log.info("Docker event stream reconnected")
            self._sweep()

    def _sweep(self) -> None:
        """After a gap in the event stream: report every node of ours that is not running, since
        its exit may not have been replayed (a restarted Docker engine stops containers without
        keeping their events). Reporting a node twice is harmless: the listener re-inspects."""
        try:
            containers = self._api.containers(all=True, filters={"label": [f"{L_OWNER}={self.owner}"]})
        except Exception as exc:
            log.warning("cannot list containers after reconnecting: %s", exc)
            return
        listener = self._listener
        for container in containers:
            name = (container.get("Labels") or {}).get(L_NAME)
            if name and container.get("State") not in _LIVE and listener is not None:
                try:
                    listener(name)
                except Exception:
                    log.exception("exit listener failed for node %s", name)

    @staticmethod
    def _events(stream: Any) -> Iterator[dict[str, Any]]:
        yield from stream

    def _handle_event(self, event: Mapping[str, Any]) -> None:
        action = event.get("Action") or event.get("status")
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        name = attributes.get(L_NAME)
        cid = str(event.get("id") or (event.get("Actor") or {}).get("ID") or "")
        if not name:
            return
        if action == "oom":
            log.warning("node %s ran out of memory (container limit reached)", name)
            return
        log.info("node %s exited (code %s)", name, attributes.get("exitCode", "?"))
        listener = self._listener
        try:
            if listener is not None and not self._closing.is_set():
                listener(name)
        except Exception:
            log.exception("exit listener failed for node %s", name)
        finally:
            with self._deaths_cond:
                self._deaths[cid] = self._deaths.get(cid, 0) + 1
                self._deaths_cond.notify_all()
