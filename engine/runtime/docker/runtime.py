"""NodeRuntime on Docker: one container per node, through the Docker SDK for Python.

This class manages nodes. What a container is made of is in spec.py, the Docker calls on
containers and volumes in containers.py, images and their versions in images.py, and exits
reach the listener through Docker's event stream (events.py).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import docker.errors

from engine.access import TlsContexts
from engine.adapters.memcached import SASL_DIR
from engine.adapters.redis import RedisAdapter, start_data
from engine.adapters.redis_probes import ProbeConnections
from engine.addresses import check_bindable
from engine.runtime.base import (
    NODE_NAME,
    ExitListener,
    IamVerify,
    NodeConfig,
    NodeInfo,
    NodeLocks,
    ProbeResult,
    RuntimeError_,
    pause_for_probe,
    without_seed,
)
from engine.runtime.commands import TcpNodeCommands
from engine.runtime.docker.api import call, connect
from engine.runtime.docker.containers import Containers
from engine.runtime.docker.events import DieEvents
from engine.runtime.docker.images import Images
from engine.runtime.docker.secure import node_env, node_files
from engine.runtime.docker.spec import (
    DATA_PATH,
    LIVE,
    SERVERS,
    NetworkMode,
    check_labels,
    image_runs_as_root,
    node_command,
    node_info_of,
    stored_config,
)
from engine.security import sasl_users
from engine.stats import StatsReader, cgroup_cpu_seconds

__all__ = ["DockerRuntime"]

_KILL_WAIT = 5.0


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
            if engine not in SERVERS:
                raise ValueError(f"image for unknown engine {engine!r} (known: {', '.join(SERVERS)})")
            if "{version}" not in template:
                raise ValueError(f"image template {template!r} for {engine} must contain '{{version}}'")
        self.owner = owner
        self.network: NetworkMode = network
        self._start_grace = start_grace
        where = base_url or "the default Docker socket (DOCKER_HOST, docker context, /var/run/docker.sock)"
        self._api = connect(base_url, api_timeout, where)
        self._events_api = connect(base_url, api_timeout, where)  # the long-lived event stream
        self._containers = Containers(self._api, owner, owner_note, network)
        self._images = Images(self._api, images, pull=pull, offered=versions)
        self._events = DieEvents(self._events_api, self._api, owner)
        self._node_lock = NodeLocks()
        # Node name -> config, as last seen. No lock: each use is one dict operation, atomic.
        self._configs: dict[str, NodeConfig] = {}
        self._closed = False
        self._stats = StatsReader()
        self._probes = ProbeConnections()
        self._tls = TlsContexts()
        self._images.refresh()

    # --- NodeRuntime ---

    def available_versions(self) -> Mapping[str, tuple[str, ...]]:
        """Versions offered for pulling plus versions of images present here, highest first
        (cached: the API never waits for the Docker engine)."""
        return self._images.versions()

    def tls_modes(self, engine: str, version: str) -> tuple[str, ...]:
        # The official images are built with OpenSSL; mode preferred's forwarder runs only
        # beside process nodes so far.
        return ("required",)

    def start(self, config: NodeConfig) -> NodeInfo:
        if not NODE_NAME.match(config.name):
            raise RuntimeError_(f"invalid node name {config.name!r}", temporary=False)
        if not self._images.has_engine(config.engine):
            raise RuntimeError_(f"no image is configured for engine {config.engine!r}", temporary=False)
        bad = check_labels(config)
        if bad:
            raise RuntimeError_(f"invalid node label(s) {', '.join(bad)}", temporary=False)
        with self._node_lock(config.name):
            attrs = self._containers.inspect(config.name)
            if attrs is not None:
                if attrs["State"].get("Status") in LIVE:
                    stored = stored_config(attrs) or config
                    self._configs[stored.name] = stored
                    return node_info_of(stored, attrs)
                if stored_config(attrs) == without_seed(config):
                    return self._start_existing(config, attrs["Id"])
                # Asked for something else (version, node type, address): a new container on
                # the same volume, so the data stays.
                self._containers.remove(config.name, attrs["Id"])
            return self._create(config)

    def stop(self, name: str, timeout: float = 5.0) -> None:
        """SIGTERM, SIGKILL after `timeout` (Docker's stop); a paused node is resumed first so it
        can shut down gracefully (redis with AOF flushes it). Returns once the exit listener ran."""

        def graceful(attrs: dict[str, Any]) -> None:
            if attrs["State"].get("Paused"):
                with contextlib.suppress(docker.errors.APIError):
                    self._api.unpause(attrs["Id"])
            call(f"stop node {name}", self._api.stop, attrs["Id"], timeout=max(0, round(timeout)))

        self._end(name, graceful)

    def kill(self, name: str) -> None:
        """SIGKILL (a paused container too); returns once the container has exited, so its
        addresses are free, and the exit listener has run."""

        def at_once(attrs: dict[str, Any]) -> None:
            self._containers.kill(name, attrs["Id"])
            self._await_not_running(name, attrs["Id"], _KILL_WAIT)

        self._end(name, at_once)

    def pause(self, name: str) -> None:
        """Freeze the container (cgroup freezer): it keeps its sockets but answers nothing."""
        with self._node_lock(name):
            attrs = self._running(name)
            if not attrs["State"].get("Paused"):
                call(f"pause node {name}", self._api.pause, attrs["Id"])

    def resume(self, name: str) -> None:
        with self._node_lock(name):
            attrs = self._running(name)
            if attrs["State"].get("Paused"):
                call(f"resume node {name}", self._api.unpause, attrs["Id"])

    def remove(self, name: str) -> None:
        """Kill the node and delete its container and its data volume."""
        if not NODE_NAME.match(name):
            return
        with self._node_lock(name):
            self.kill(name)
            attrs = self._containers.inspect(name)
            if attrs is not None:
                self._containers.remove(name, attrs["Id"])
            self._containers.remove_volume(name)
            self._configs.pop(name, None)

    def inspect(self, name: str) -> NodeInfo | None:
        if not NODE_NAME.match(name):
            return None
        attrs = self._containers.inspect(name)
        if attrs is not None:
            config = stored_config(attrs)
        else:
            # No container (removed from outside, or never created after its volume): the data
            # is still there, and start() brings the node back on it.
            volume = self._containers.inspect_volume(name)
            config = stored_config(volume) if volume is not None else None
        if config is None:
            return None
        self._configs[name] = config
        return node_info_of(config, attrs)

    def list_managed(self) -> list[NodeInfo]:
        """Every node of this owner: containers in any state, and data volumes whose container
        is gone."""
        infos = [self.inspect(n) for n in sorted(self._containers.names())]
        return [i for i in infos if i is not None]

    def probe(self, name: str, timeout: float) -> ProbeResult:
        try:
            config = self._config_of(name)
        except Exception as exc:  # never raises, by contract
            return ProbeResult(False, None, None, f"probe failed: {exc}", 0.0)
        if config is None:
            return ProbeResult(False, None, None, f"no node named {name}", 0.0)
        return self._probe(config, timeout)

    def wait_ready(self, name: str, timeout: float) -> bool:
        """Containers have no readiness report here (no NOTIFY_SOCKET): a short pause."""
        pause_for_probe(timeout)
        return False

    def set_exit_listener(self, listener: ExitListener) -> None:
        """Also starts watching Docker's event stream (connected before this returns, so no exit
        after it is missed)."""
        self._events.listen(listener)

    def set_iam_verifier(self, verify: IamVerify) -> None:
        """Nothing to do: nodes with IAM users are refused here (spec.py)."""

    def close(self) -> None:
        """Stop watching events. Nodes keep running; a new runtime re-adopts them."""
        if self._closed:
            return
        self._closed = True
        self._events.close()
        self._probes.close()
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
        return self._containers.logs(name, lines)

    def log_tail(self, name: str, lines: int = 20) -> str:
        return self.logs(name, lines)

    def container_name(self, name: str) -> str:
        return self._containers.name(name)

    def image_for(self, engine: str, version: str) -> str:
        return self._images.image_for(engine, version)

    def _cpu_seconds(self, name: str, info: NodeInfo) -> float | None:
        """The container's cgroup (every process in it), read from the host where the service
        shares its pid namespace; else one Docker stats call (one_shot: no second sample awaited)."""
        seconds = cgroup_cpu_seconds(info.pid) if info.pid else None
        if seconds is not None:
            return seconds
        try:
            stats = self._api.stats(self.container_name(name), stream=False, one_shot=True)
            return int(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
        except Exception:  # a stats API that will not say: the engine's own rusage stands in
            return None

    # --- starting ---

    def _create(self, config: NodeConfig) -> NodeInfo:
        image = self.image_for(config.engine, config.version)
        if not self._images.pull and config.version not in self.available_versions().get(config.engine, ()):
            self._images.refresh()  # an image may have been built since the last look
        user = self._images.user_of(image, config)
        try:
            command = node_command(config, network=self.network, runs_as_root=image_runs_as_root(user))
        except ValueError as exc:
            raise RuntimeError_(f"cannot start node {config.name}: {exc}", temporary=False) from exc
        self._check_address(config)
        cid = self._containers.create(without_seed(config), image, command, node_env(config, DATA_PATH))
        return self._start_existing(config, cid, checked=True)

    def _start_existing(self, config: NodeConfig, cid: str, *, checked: bool = False) -> NodeInfo:
        if not checked:
            self._check_address(config)
        self._configs[config.name] = without_seed(config)
        try:
            files = (*(start_data(config) if config.engine in RedisAdapter.engines else ()),
                     *node_files(config, DATA_PATH))
        except ValueError as exc:
            raise RuntimeError_(f"cannot start node {config.name}: {exc}", temporary=False) from exc
        if files:
            self._containers.put_files(config.name, cid, files)
        self._containers.start(config, cid)
        attrs = self._containers.inspect(config.name)
        deadline = time.monotonic() + self._start_grace
        while attrs is not None and attrs["State"].get("Status") in LIVE and time.monotonic() < deadline:
            time.sleep(0.02)
            attrs = self._containers.inspect(config.name)
        if attrs is None or attrs["State"].get("Status") not in LIVE:
            code = attrs["State"].get("ExitCode") if attrs else None
            tail = self.logs(config.name, 8)
            raise RuntimeError_(
                f"{config.engine} {config.version} node {config.name} exited at once (code {code}); "
                f"last lines of its log (docker logs {self.container_name(config.name)}):\n{tail}",
                temporary="Address already in use" in tail,
            )
        return node_info_of(config, attrs)

    def _check_address(self, config: NodeConfig) -> None:
        """In host networking a port already taken is caught before the container starts."""
        if self.network == "host":
            check_bindable(config)

    # --- running nodes ---

    def _end(self, name: str, how: Callable[[dict[str, Any]], None]) -> None:
        """Make the node exit, if it runs, by `how(its container)`; return once the exit listener
        has heard of it (Docker's die event), so a start() that follows is not taken for it."""
        with self._node_lock(name):
            attrs = self._containers.inspect(name)
            if attrs is None or attrs["State"].get("Status") not in LIVE:
                return
            seen = self._events.deaths(attrs["Id"])
            how(attrs)
            self._events.await_dispatch(attrs["Id"], seen)

    def _running(self, name: str) -> dict[str, Any]:
        attrs = self._containers.inspect(name)
        if attrs is None or attrs["State"].get("Status") not in ("running", "paused"):
            raise RuntimeError_(f"node {name} is not running", temporary=False)
        return attrs

    def _await_not_running(self, name: str, cid: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            attrs = self._containers.inspect(name)
            if attrs is None or attrs["Id"] != cid or attrs["State"].get("Status") not in LIVE:
                return
            if time.monotonic() > deadline:
                raise RuntimeError_(f"node {name} did not exit after SIGKILL")
            time.sleep(0.01)

    def _store_config(self, name: str, config: NodeConfig) -> None:
        """Users changed by apply_users: kept here and in the node's ACL file (ACL SAVE); the
        container's label keeps the config it was created with, and a start() brings the one
        its caller passes."""
        self._configs[name] = config

    def _apply_sasl(self, name: str, config: NodeConfig) -> None:
        """Memcached: the node's SASL files, new, into its volume while it runs (Docker's archive
        API works on a running container too); Cyrus reads the sasldb at each login, so new logins
        take the new users at once and logged-in clients stay. Turning SASL on or off takes a
        restart (the text protocol is off with it)."""
        attrs = self._running(name)
        current = self._config_of(name)
        had = current is not None and current.security is not None and bool(sasl_users(current.security))
        if bool(config.security and sasl_users(config.security)) != had:
            raise RuntimeError_(f"node {name}: turning memcached SASL on or off takes a restart", temporary=False)
        try:
            files = [f for f in node_files(config, DATA_PATH) if f.path.startswith(f"{SASL_DIR}/")]
        except ValueError as exc:
            raise RuntimeError_(f"node {name}: {exc}", temporary=False) from exc
        self._containers.put_files(name, attrs["Id"], files)

    def _config_of(self, name: str) -> NodeConfig | None:
        config = self._configs.get(name)
        if config is not None:
            return config
        self.inspect(name)  # remembers the config
        return self._configs.get(name)
