"""What the user and user-group handlers (and the replication groups' RBAC) share: ids, engines,
lookups with AWS's NotFound faults, which users fit which groups, and the shapes."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar, cast

from controlplane.catalog import version_key
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.handlers.lookup import ensure_builtin, get_or_builtin
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state import user_shapes
from controlplane.state.acl import caches_using_group, groups_with_user
from controlplane.state.users import DEFAULT_USER_ID, User, UserGroup, builtin_default_user

ENGINES = ("redis", "valkey")
R = TypeVar("R", User, UserGroup)
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def engine_of(value: str) -> str:
    engine = value.lower()
    if engine not in ENGINES:
        raise v.invalid(f"Invalid Engine: {value}. Valid values: redis, valkey.")
    return engine


def rbac_id(value: str, what: str) -> str:
    """A UserId or UserGroupId: AWS's pattern [a-zA-Z][a-zA-Z0-9-]*, stored lower-case."""
    if not _ID.match(value):
        raise v.invalid(f"Invalid {what}: {value}. It must begin with a letter and contain only ASCII letters, "
                        "digits and hyphens.")
    return value.lower()


def ensure_default_user(ctx: RequestContext) -> None:
    """The built-in `default` user of this account and region, stored on first use so that tags,
    groups and paging treat it as any other user."""
    ensure_builtin(ctx, User, DEFAULT_USER_ID, builtin_default_user)


def get_user(ctx: RequestContext, value: str) -> User:
    return get_or_builtin(ctx, User, value, DEFAULT_USER_ID, builtin_default_user,
                          lambda v: e.UserNotFoundFault(f"User {v} not found."))


def get_group(ctx: RequestContext, value: str) -> UserGroup:
    rec = ctx.services.store.get(ctx.key(UserGroup.KIND, value.lower()), UserGroup)
    if rec is None:
        raise e.UserGroupNotFoundFault(f"User group {value} not found.")
    return rec


def fits_group(group_engine: str, user: User) -> str | None:
    """Why the user cannot be in a group of that engine (None: it can). AWS: a redis group holds
    redis users; a valkey group holds valkey users and redis users that authenticate (a password
    or IAM)."""
    if group_engine == "redis" and user.spec.engine != "redis":
        return f"User {user.id} has engine {user.spec.engine}; a redis user group holds only redis users."
    if group_engine == "valkey" and user.spec.engine == "redis" and user.spec.auth_type == "no-password":
        return (f"User {user.id} needs no password; a valkey user group holds only users that authenticate "
                "(a password or IAM).")
    return None


def write(ctx: RequestContext, rec: R, change: Callable[[R], None]) -> R:
    """Apply `change` to the stored user or group (its NotFound if it went meanwhile); enqueue it."""
    updated = ctx.services.store.update(rec.key, type(rec), change)
    if updated is None:
        if isinstance(rec, User):
            raise e.UserNotFoundFault(f"User {rec.id} not found.")
        raise e.UserGroupNotFoundFault(f"User group {rec.id} not found.")
    ctx.services.enqueue(rec.key)
    return updated


def request_delete(rec: User | UserGroup) -> None:
    rec.spec.delete_requested = True
    rec.generation += 1


def drop_member(ctx: RequestContext, group: UserGroup, uid: str) -> None:
    """DeleteUser: the user leaves the group (which reads `modifying` until its caches have it)."""

    def change(g: UserGroup) -> None:
        if uid in g.spec.user_ids:
            g.spec.user_ids = [u for u in g.spec.user_ids if u != uid]
            g.generation += 1

    touch_caches(ctx, write(ctx, group, change))


def fits_caches(ctx: RequestContext, group: UserGroup, minimum: str) -> None:
    """Refuse a change that would need a newer engine than a replication group using the group runs."""
    for rg in caches_using_group(ctx.services.store, group):
        version = rg.target().engine_version
        if version_key(version) < version_key(minimum):
            raise v.combination(f"User group {group.id} is used by replication group {rg.id}, which runs "
                                f"{rg.spec.engine} {version}; this change needs {minimum} or later.")


def touch_caches(ctx: RequestContext, group: UserGroup) -> None:
    """The replication groups using the group reconcile now: their nodes' ACL changed."""
    for rg in caches_using_group(ctx.services.store, group):
        ctx.services.enqueue(rg.key)


def user_shape(ctx: RequestContext, rec: User) -> m.User:
    group_ids = [g.id for g in groups_with_user(ctx.services.store, rec)]
    return cast(m.User, user_shapes.user(rec, group_ids))


def members(ctx: RequestContext, group: UserGroup) -> list[User]:
    store = ctx.services.store
    return [u for u in (store.get(ctx.key(User.KIND, uid), User) for uid in group.spec.user_ids) if u is not None]


def group_shape(ctx: RequestContext, rec: UserGroup) -> m.UserGroup:
    caches = [rg.id for rg in caches_using_group(ctx.services.store, rec)]
    return cast(m.UserGroup, user_shapes.user_group(rec, members(ctx, rec), caches))
