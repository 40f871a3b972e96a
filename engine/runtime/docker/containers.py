"""The containers and data volumes of one owner's nodes on the Docker engine.

Networking: "host" (default, Linux) runs each node in the host's network and pid namespaces,
so a node listens on its own loopback address and standard port exactly as a process node does
(extra `bind` addresses can be added at run time), its INFO `process_id` is a host pid, and
nothing sits in the data path (publishing with -p goes through docker-proxy and halves redis
throughput). "ports" (Docker Desktop, no host networking) publishes the node's port on the
node's address (127.0.0.1 there) and the node binds 0.0.0.0 inside its own namespace.

Data lives on a named volume per node mounted at /data: a stopped or killed node is started
again on the same container and volume. What it loads there is put in before each start
(put_files): a seed, or an empty RDB over leftovers when the node does not persist its data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import docker.errors
from docker.types import LogConfig, Mount

from engine.adapters.redis import DataFile
from engine.runtime.base import NodeConfig, RuntimeError_
from engine.runtime.docker.api import call, docker_error
from engine.runtime.docker.archive import tar_stream
from engine.runtime.docker.spec import (
    DATA_PATH,
    L_NAME,
    L_OWNER,
    NetworkMode,
    container_name,
    labels,
    memory_limit_mb,
    owner_filter,
)

__all__ = ["Containers"]

log = logging.getLogger(__name__)

_VOLUME_BUSY_WAIT = 5.0  # a volume stays in use for a moment after its container's removal


class Containers:
    """Containers and volumes of `owner` (labelled with `owner_note`, the owner's data
    directory, for people reading `docker ps`). Every method is one or a few Docker API calls."""

    def __init__(self, api: Any, owner: str, owner_note: str, network: NetworkMode) -> None:
        self._api = api
        self.owner = owner
        self._owner_note = owner_note
        self.network: NetworkMode = network

    def name(self, node: str) -> str:
        return container_name(self.owner, node)

    def inspect(self, node: str) -> dict[str, Any] | None:
        """The container of node `node` (ours: owner label checked), or None."""
        cname = self.name(node)
        try:
            attrs: dict[str, Any] = self._api.inspect_container(cname)
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise docker_error(f"inspect node {node}", exc) from exc
        found = (attrs.get("Config") or {}).get("Labels") or {}
        if found.get(L_OWNER) != self.owner or found.get(L_NAME) != node:
            raise RuntimeError_(f"container {cname} exists but is not this service's node {node}", temporary=False)
        return attrs

    def inspect_volume(self, node: str) -> dict[str, Any] | None:
        """The data volume of node `node` (ours), or None."""
        try:
            attrs: dict[str, Any] = self._api.inspect_volume(self.name(node))
        except docker.errors.NotFound:
            return None
        except Exception as exc:
            raise docker_error(f"inspect the volume of node {node}", exc) from exc
        if (attrs.get("Labels") or {}).get(L_OWNER) != self.owner:
            return None
        return attrs

    def names(self) -> set[str]:
        """Every node of this owner: with a container in any state, or only a data volume."""
        containers = call("list containers", self._api.containers, all=True, filters=owner_filter(self.owner))
        volumes = call("list volumes", self._api.volumes, filters=owner_filter(self.owner)).get("Volumes") or []
        found = {(c.get("Labels") or {}).get(L_NAME) for c in containers}
        found |= {(v.get("Labels") or {}).get(L_NAME) for v in volumes}
        return {n for n in found if n}

    def create(self, config: NodeConfig, image: str, command: list[str], env: Mapping[str, str] | None = None) -> str:
        """A new container for the node on its volume (created with it if missing); its id."""
        cname = self.name(config.name)
        node_labels = labels(config, self.owner, self._owner_note)
        mount = Mount(target=str(DATA_PATH), source=cname, type="volume", labels=node_labels)
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
                image, command=command, name=cname, labels=node_labels, host_config=host_config, ports=ports,
                detach=True, stop_signal="SIGTERM", environment=dict(env or {}),
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # a container of that name appeared meanwhile (another runtime)
                raise RuntimeError_(f"container {cname} already exists; retrying", temporary=True) from exc
            raise docker_error(f"create the container of node {config.name}", exc) from exc
        except Exception as exc:
            raise docker_error(f"create the container of node {config.name}", exc) from exc
        log.info("node %s: created container %s (%s)", config.name, cname, image)
        return str(created["Id"])

    def start(self, config: NodeConfig, cid: str) -> None:
        try:
            self._api.start(cid)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "address already in use" in text or "port is already allocated" in text:
                raise RuntimeError_(
                    f"cannot start node {config.name}: {config.host}:{config.port} is already in use", temporary=True
                ) from exc
            raise docker_error(f"start node {config.name}", exc) from exc
        except Exception as exc:
            raise docker_error(f"start node {config.name}", exc) from exc

    def put_files(self, node: str, cid: str, files: Sequence[DataFile]) -> None:
        """Write `files` into the node's volume (/data) of container `cid`: its start data before
        it starts, or (memcached SASL users) new files while it runs."""
        stream = tar_stream(files)
        try:
            self._api.put_archive(cid, str(DATA_PATH), stream)
        except Exception as exc:
            raise docker_error(f"put the start data of node {node} into its volume", exc) from exc

    def kill(self, node: str, cid: str) -> None:
        try:
            self._api.kill(cid)
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: not running (it has just exited)
                raise docker_error(f"kill node {node}", exc) from exc
        except Exception as exc:
            raise docker_error(f"kill node {node}", exc) from exc

    def remove(self, node: str, cid: str) -> None:
        """Remove the container (not its volume), whatever its state."""
        try:
            self._api.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except Exception as exc:
            raise docker_error(f"remove the container of node {node}", exc) from exc

    def remove_volume(self, node: str) -> None:
        volume = self.name(node)
        deadline = time.monotonic() + _VOLUME_BUSY_WAIT
        while True:
            try:
                if self.inspect_volume(node) is None:
                    return
                self._api.remove_volume(volume, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                # 409: still in use by a container being removed; it goes in a moment.
                if exc.status_code != 409 or time.monotonic() > deadline:
                    raise docker_error(f"delete the data volume of node {node}", exc) from exc
                time.sleep(0.05)
            except Exception as exc:
                raise docker_error(f"delete the data volume of node {node}", exc) from exc

    def logs(self, node: str, lines: int) -> str:
        """The last lines of the node's output (its log)."""
        attrs = self.inspect(node)
        if attrs is None:
            return "(no container)"
        try:
            raw = self._api.logs(attrs["Id"], stdout=True, stderr=True, tail=lines)
        except Exception as exc:
            return f"(no log: {exc})"
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
