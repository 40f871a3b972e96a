"""NodeRuntime on Docker, one container per node:

  runtime.py     DockerRuntime: starting, stopping, inspecting and removing nodes
  spec.py        what a node's container is: name, labels, command, memory limit
  containers.py  the Docker calls on one owner's containers and data volumes
  images.py      images per engine and version: templates, pulls, versions offered
  events.py      exit watching: Docker's event stream, passed to the exit listener
  api.py         connecting to the Docker engine; its failures as runtime errors
"""

from engine.runtime.docker.runtime import DockerRuntime
from engine.runtime.docker.spec import DATA_PATH, LABEL, container_name, memory_limit_mb, node_command, owner_for

__all__ = [
    "DATA_PATH",
    "LABEL",
    "DockerRuntime",
    "container_name",
    "memory_limit_mb",
    "node_command",
    "owner_for",
]
