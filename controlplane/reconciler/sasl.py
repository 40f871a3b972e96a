"""Memcached SASL users follow the credentials file (controlplane/sasl.py) on running nodes.

A node starts with the file's users of that moment (reconciler/security.py). Each pass over a
cluster with SASL (a resync comes every few seconds) reads the file again (only when it changed:
SaslUsers) and gives every running node whose users differ the new ones with
`runtime.apply_users`, live: connected clients stay logged in, new logins take the new
passwords. What each node has is kept here, in memory only (passwords never enter the store):
after a restart of the service every node is given the file's users once, which changes nothing
on a node that has them.

A file that became unusable (removed, readable by others, a bad line) changes nothing: the nodes
keep their users, and an event says why, once per distinct problem."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from controlplane.reconciler.errors import TemporaryError
from controlplane.reconciler.infra import Infra
from controlplane.state.records import CacheCluster, ResourceKey
from engine import AclUser, NodeSecurity, RuntimeError_

log = logging.getLogger("elasticache_local.reconciler")


class SaslSync:
    def __init__(self, infra: Infra, emit: Callable[[CacheCluster, str], None]) -> None:
        self._infra = infra
        self._emit = emit
        self._lock = threading.Lock()
        self._users: dict[str, tuple[AclUser, ...]] = {}  # node name -> the SASL users it has
        self._problems: dict[ResourceKey, str] = {}  # cluster -> the file problem last reported

    def started(self, name: str, security: NodeSecurity | None, sasl: bool) -> None:
        """Node `name` is (re)started with `security`: its users are those."""
        with self._lock:
            if sasl and security is not None:
                self._users[name] = security.users
            else:
                self._users.pop(name, None)

    def forget(self, names: Sequence[str]) -> None:
        with self._lock:
            for name in names:
                self._users.pop(name, None)

    def converge(self, rec: CacheCluster, names: Sequence[str]) -> None:
        """Give the running nodes `names` of SASL cluster `rec` the file's users where theirs differ."""
        secrets = self._infra.secrets
        if not rec.spec.security.sasl or secrets is None or not names:
            return
        try:
            users = secrets.sasl_users()
        except ValueError as exc:
            problem = str(exc)
            with self._lock:
                known = self._problems.get(rec.key) == problem
                self._problems[rec.key] = problem
            if not known:
                log.warning("cache cluster %s: %s", rec.id, problem)
                self._emit(rec, f"Memcached SASL users not updated ({problem}): the nodes keep the users they have")
            return
        with self._lock:
            self._problems.pop(rec.key, None)
            stale = {name: self._users.get(name) for name in names if self._users.get(name) != users}
        for name in stale:
            try:
                self._infra.runtime.apply_users(name, users)
            except RuntimeError_ as exc:
                raise TemporaryError(f"updating the SASL users of {name}: {exc}", delay=0.5) from exc
            with self._lock:
                self._users[name] = users
        if any(before is not None for before in stale.values()):  # not the first look after a restart
            self._emit(rec, f"Memcached SASL users of cache cluster {rec.id} updated on its nodes")
