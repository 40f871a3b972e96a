"""The status machines of RBAC users and user groups (state/users.py says which statuses mean
what). Neither acts on a node: a replication group's reconciler applies their ACLs to its nodes and
records that in `security_applied` (state/acl.py, the one hook); these only read it and move the
user or group on once every cache using it has what it asks."""

from __future__ import annotations

import logging
from collections.abc import Callable

from controlplane.reconciler.errors import Requeue
from controlplane.state.acl import group_in_sync, groups_with_user, user_in_sync
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store
from controlplane.state.users import User, UserGroup

log = logging.getLogger("elasticache_local.reconciler")

WAIT = 1.0  # seconds until a user or group waiting for its caches looks again (the resync also brings it back)


class _StatusMachine:
    """A reconciler that only reads and writes records: nothing to start, no failure status."""

    kind = ""

    def __init__(self, store: Store) -> None:
        self._store = store

    def startup(self) -> None:
        return None

    def fail(self, key: ResourceKey, message: str) -> None:
        log.warning("%s %s: %s", key.kind, key.id, message)


class UserReconciler(_StatusMachine):
    kind = User.KIND

    def reconcile(self, key: ResourceKey) -> None:
        user = self._store.get(key, User)
        if user is None:
            return
        if user.spec.delete_requested:
            # Gone once no group lists it, as asked or on any node (DeleteUser took it out of them).
            if groups_with_user(self._store, user):
                raise Requeue(f"user {user.id}: waiting for its user groups to drop it", WAIT)
            self._store.delete(key)
            return
        if user.status.applied_generation >= user.generation:
            return
        if not user_in_sync(self._store, user):
            raise Requeue(f"user {user.id}: waiting for the nodes of its caches", WAIT)
        seen = user.generation

        def applied(r: User) -> None:
            r.status.applied_generation = max(r.status.applied_generation, seen)
            r.observed_generation = max(r.observed_generation, seen)

        self._store.update(key, User, applied)


class UserGroupReconciler(_StatusMachine):
    kind = UserGroup.KIND

    def __init__(self, store: Store, enqueue: Callable[[ResourceKey], None]) -> None:
        super().__init__(store)
        self._enqueue = enqueue  # users the group let go of: a deleted one waits for that

    def reconcile(self, key: ResourceKey) -> None:
        group = self._store.get(key, UserGroup)
        if group is None:
            return
        if group.spec.delete_requested:
            # DeleteUserGroup refused while a replication group uses it: no node has it.
            self._store.delete(key)
            return
        in_sync = group_in_sync(self._store, group)
        seen = group.generation

        def record(r: UserGroup) -> None:
            if in_sync and r.generation == seen:
                r.status.user_ids = list(r.spec.user_ids)
                r.observed_generation = seen
                r.status.phase = "active"
            else:
                r.status.phase = "modifying"

        if in_sync:
            done = (group.status.phase == "active" and group.status.user_ids == group.spec.user_ids
                    and group.observed_generation == seen)
        else:
            done = group.status.phase == "modifying"
        if not done:  # the resync passes write nothing when nothing changed
            self._store.update(key, UserGroup, record)
            for uid in group.users_to_remove() if in_sync else []:
                self._enqueue(ResourceKey(User.KIND, key.account, key.region, uid))
        if not in_sync:
            raise Requeue(f"user group {group.id}: waiting for the nodes of its caches", WAIT)
