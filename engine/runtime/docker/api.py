"""Talking to the Docker engine: connecting, and Docker failures as runtime errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from engine.runtime.base import RuntimeError_

__all__ = ["call", "connect", "docker_error"]

T = TypeVar("T")


def connect(base_url: str | None, timeout: float, where: str) -> docker.APIClient:
    """A low-level client of the Docker engine at `base_url` (None: the default socket), pinged.
    Raises a permanent RuntimeError_ that says how to get one where none answers."""
    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, version="auto", timeout=int(timeout), max_pool_size=32)
        else:
            client = docker.DockerClient.from_env(version="auto", timeout=int(timeout), max_pool_size=32)
        client.api.ping()
    except Exception as exc:
        raise RuntimeError_(
            f"cannot reach the Docker engine at {where}: {exc}. Start Docker (on Debian/Ubuntu as root: "
            "deploy/docker-setup.sh), point the docker host setting at it, or use the process runtime",
            temporary=False,
        ) from exc
    return client.api


def docker_error(what: str, exc: BaseException) -> RuntimeError_:
    """A Docker failure as a runtime error: the daemon being away or busy may pass (temporary);
    a refused request (bad image, bad argument) will not."""
    if isinstance(exc, docker.errors.APIError):
        explanation = exc.explanation or str(exc)
        status = exc.status_code or 500
        return RuntimeError_(f"{what}: {explanation}", temporary=status >= 500 or status == 409)
    if isinstance(exc, requests.exceptions.RequestException | OSError | docker.errors.DockerException):
        return RuntimeError_(f"{what}: the Docker engine does not answer ({exc})", temporary=True)
    return RuntimeError_(f"{what}: {exc}")


def call(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), its failure raised as docker_error(what, ...)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        raise docker_error(what, exc) from exc
