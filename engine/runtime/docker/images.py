"""The docker runtime's images: one per engine and version, from templates such as
"redis:{version}" (official images, pulled on first use with progress in the log) or
"elasticache-local/redis:{version}" (built from the OS's binaries by deploy/build-images.sh,
with pulling off). The versions offered are those offered for pulling plus those of images
present on the Docker engine."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker.errors
from docker.utils import parse_repository_tag

from engine.runtime.base import NodeConfig, RuntimeError_
from engine.runtime.docker.api import call, docker_error
from engine.versions import parse_version

__all__ = ["Images", "template_pattern"]

log = logging.getLogger(__name__)

_VERSIONS_TTL = 5.0  # available_versions: refreshed in the background when older
# A failed pull is tried again after PULL_RETRY_FIRST seconds, doubling up to PULL_RETRY_MAX:
# callers retry every few seconds, and a registry that is not there will not be in 2 s either.
# Meanwhile an image that appears on the engine (built, tagged, pulled by hand) is used at once.
PULL_RETRY_FIRST = 2.0
PULL_RETRY_MAX = 60.0


@dataclass
class _FailedPull:
    attempts: int
    retry_at: float  # monotonic
    message: str  # the first failure's, kept: the same words each time, so callers can say it once


def normalize_ref(ref: str) -> str:
    """"docker.io/library/redis:7" and "redis:7" name the same image (RepoTags say the latter)."""
    for prefix in ("docker.io/", "index.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    if ref.startswith("library/"):
        ref = ref[len("library/") :]
    return ref


def template_pattern(template: str) -> re.Pattern[str]:
    """What the tags of a template's images look like; group "version" is the version."""
    before, _, after = normalize_ref(template).partition("{version}")
    return re.compile(re.escape(before) + r"(?P<version>\d+(?:\.\d+)*)" + re.escape(after) + "$")


class Images:
    """Images of the templates `templates` (engine -> template with "{version}") on the Docker
    engine behind `api`. `pull`: pull a missing image (progress in the log); off, only images
    already present can run. `offered`: engine -> versions offered for pulling (with `pull`)."""

    def __init__(self, api: Any, templates: Mapping[str, str], *, pull: bool,
                 offered: Mapping[str, Sequence[str]] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        self._monotonic = monotonic
        self._templates = dict(templates)
        self._patterns = {engine: template_pattern(t) for engine, t in self._templates.items()}
        self.pull = pull
        self._offered = {e: tuple(v) for e, v in (offered or {}).items() if e in self._templates} if pull else {}
        self._lock = threading.Lock()  # guards the fields below
        self._users: dict[str, str] = {}  # image ref -> its Config.User (present images)
        self._pulls: dict[str, threading.Lock] = {}  # image ref -> held while it is pulled
        self._failed: dict[str, _FailedPull] = {}  # image ref -> its last failed pull (guarded by its pull lock)
        self._versions: dict[str, tuple[str, ...]] = {}
        self._versions_at = -_VERSIONS_TTL
        self._refreshing = False

    def has_engine(self, engine: str) -> bool:
        return engine in self._templates

    def image_for(self, engine: str, version: str) -> str:
        return self._templates[engine].format(version=version)

    def versions(self) -> dict[str, tuple[str, ...]]:
        """Versions offered for pulling plus versions of images present here, highest first.
        Cached: a stale answer is returned at once and refreshed in the background, so the API
        never waits for the Docker engine."""
        with self._lock:
            versions = dict(self._versions)
            stale = time.monotonic() - self._versions_at > _VERSIONS_TTL and not self._refreshing
            if stale:
                self._refreshing = True
        if stale:
            threading.Thread(target=self.refresh, name="docker-versions", daemon=True).start()
        return versions

    def user_of(self, image: str, config: NodeConfig) -> str:
        """The image's user (Config.User); pulls the image first when it is missing and pulling
        is on, logging its progress."""
        with self._lock:
            if image in self._users:
                return self._users[image]
            lock = self._pulls.setdefault(image, threading.Lock())
        with lock:  # one pull per image, however many nodes wait for it
            with self._lock:
                if image in self._users:
                    return self._users[image]
            try:
                attrs = self._api.inspect_image(image)
            except docker.errors.ImageNotFound:
                if not self.pull:
                    raise RuntimeError_(
                        f"image {image} for {config.engine} {config.version} is not on this Docker engine and "
                        "pulling is off: build the local images with deploy/build-images.sh, or turn pulling on",
                        temporary=False,
                    ) from None
                self._pull_with_backoff(image)
                attrs = call(f"inspect image {image}", self._api.inspect_image, image)
            except Exception as exc:
                raise docker_error(f"inspect image {image}", exc) from exc
            user = str((attrs.get("Config") or {}).get("User") or "")
            with self._lock:
                self._users[image] = user
            return user

    def _pull_with_backoff(self, image: str) -> None:
        """Pull `image` unless its last pull failed less than the backoff ago; a failure is
        logged once, with what to do, and raised with the same words every time."""
        failed = self._failed.get(image)
        now = self._monotonic()
        if failed is not None and now < failed.retry_at:
            raise RuntimeError_(failed.message, temporary=False)
        try:
            self.pull_image(image, retry=failed is not None)
        except RuntimeError_ as exc:
            attempts = failed.attempts + 1 if failed is not None else 1
            delay = min(PULL_RETRY_MAX, PULL_RETRY_FIRST * 2 ** (attempts - 1))
            message = failed.message if failed is not None else (
                f"{exc}. To run it without a registry: `docker pull {image}` where one answers (or `docker load`), "
                "or build local images with deploy/build-images.sh and point the DOCKER_IMAGE_* settings at them "
                "(elasticache-local/<engine>:{version}); it is used as soon as it is on this Docker engine")
            if failed is None:
                log.warning("%s (the pull is tried again after %g s, then less and less often, at most every %g s)",
                            message, delay, PULL_RETRY_MAX)
            else:
                log.debug("pull of %s failed again (attempt %d): %s", image, attempts, exc)
            self._failed[image] = _FailedPull(attempts, now + delay, message)
            raise RuntimeError_(message, temporary=False) from exc
        self._failed.pop(image, None)

    def pull_image(self, image: str, retry: bool = False) -> None:
        """Pull `image`, logging its progress (each layer done, and every second); `retry`:
        a pull that failed before, started quietly (its failure was already told)."""
        repository, tag = parse_repository_tag(image)
        log.log(logging.DEBUG if retry else logging.INFO, "pulling image %s (first use; progress follows)", image)
        started = time.monotonic()
        progress = _Progress(image)
        try:
            for event in self._api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                if "error" in event:
                    raise RuntimeError_(f"cannot pull {image}: {event['error']}", temporary=False)
                progress.update(event)
        except RuntimeError_:
            raise
        except Exception as exc:
            raise RuntimeError_(f"cannot pull {image}: {exc}", temporary=False) from exc
        log.info("pulled %s in %.1f s", image, time.monotonic() - started)
        self.refresh()

    def refresh(self) -> None:
        """Look again which images are present (an image may have been built or pulled)."""
        found: dict[str, set[str]] = {engine: set(v) for engine, v in self._offered.items()}
        try:
            images = self._api.images()
        except Exception as exc:
            log.warning("cannot list Docker images: %s", exc)
            images = None
        for image in images or ():
            for tag in image.get("RepoTags") or ():
                tag = normalize_ref(str(tag))
                for engine, pattern in self._patterns.items():
                    match = pattern.match(tag)
                    if match:
                        found.setdefault(engine, set()).add(match.group("version"))
        versions = {e: tuple(sorted(v, key=parse_version, reverse=True)) for e, v in found.items() if v}
        with self._lock:
            if images is not None or not self._versions:
                self._versions = versions
            self._versions_at = time.monotonic()
            self._refreshing = False


class _Progress:
    """A pull's progress as Docker streams it, logged at each layer done and every second."""

    def __init__(self, image: str) -> None:
        self._image = image
        self._layers: dict[str, tuple[int, int]] = {}  # layer -> (bytes so far, bytes in all)
        self._done: set[str] = set()
        self._last_report = time.monotonic()

    def update(self, event: Mapping[str, Any]) -> None:
        layer = str(event.get("id") or "")
        status = str(event.get("status") or "")
        detail = event.get("progressDetail") or {}
        milestone = False
        if status == "Downloading" and detail.get("total"):
            self._layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif status in ("Pull complete", "Already exists") and layer and layer not in self._done:
            self._done.add(layer)
            milestone = True
        now = time.monotonic()
        if milestone or now - self._last_report >= 1.0:
            self._last_report = now
            current = sum(c for c, _ in self._layers.values()) / 1e6
            total = sum(t for _, t in self._layers.values()) / 1e6
            log.info("pulling %s: %.1f of %.1f MB, %d layer(s) done", self._image, current, total, len(self._done))
