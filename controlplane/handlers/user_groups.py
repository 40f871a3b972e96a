"""CreateUserGroup, ModifyUserGroup, DeleteUserGroup, DescribeUserGroups, with AWS's rules: a group
holds a user named `default`, no user name twice, users that fit its engine, at most 100 users."""

from __future__ import annotations

from typing import cast

from controlplane.handlers import cluster_security
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.rbac import (
    engine_of,
    fits_caches,
    fits_group,
    get_group,
    get_user,
    group_shape,
    rbac_id,
    request_delete,
    touch_caches,
    write,
)
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state.acl import caches_using_group
from controlplane.state.users import DEFAULT_USER_NAME, User, UserGroup, UserGroupSpec, group_minimum

MAX_USERS_PER_GROUP = 100  # AWS's quotas
MAX_GROUPS = 100


def _ids(values: list[str], what: str) -> list[str]:
    ids = [value.lower() for value in values]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise v.invalid(f"{what} lists {', '.join(twice)} more than once.")
    return ids


def _members(ctx: RequestContext, engine: str, ids: list[str]) -> list[User]:
    """The users a group would hold, each checked, and the group's own rules."""
    users = []
    for uid in ids:
        user = get_user(ctx, uid)
        if user.spec.delete_requested:
            raise v.invalid(f"User {user.id} is being deleted.")
        reason = fits_group(engine, user)
        if reason:
            raise v.invalid(reason)
        users.append(user)
    names = [u.spec.user_name for u in users]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise e.DuplicateUserNameFault(f"A user group cannot hold two users named {', '.join(twice)}.")
    if DEFAULT_USER_NAME not in names:
        raise e.DefaultUserRequired("A user group must contain a user whose UserName is default.")
    if len(users) > MAX_USERS_PER_GROUP:
        raise e.UserGroupQuotaExceededFault(f"A user group can hold at most {MAX_USERS_PER_GROUP} users.")
    return users


def create_user_group(ctx: RequestContext, params: m.CreateUserGroupMessage) -> m.UserGroup:
    gid = rbac_id(params["UserGroupId"], "UserGroupId")
    store = ctx.services.store
    if store.get(ctx.key(UserGroup.KIND, gid), UserGroup) is not None:
        raise e.UserGroupAlreadyExistsFault(f"User group {gid} already exists.")
    engine = engine_of(params["Engine"])
    ids = _ids(list(params.get("UserIds", [])), "UserIds")
    _members(ctx, engine, ids)
    tags = v.tag_records(params.get("Tags", []))
    if len(store.records(UserGroup, ctx.account, ctx.region)) >= MAX_GROUPS:
        raise e.UserGroupQuotaExceededFault(f"The quota of {MAX_GROUPS} user groups per region has been reached.")
    rec = UserGroup(account=ctx.account, region=ctx.region, id=gid, created_at=ctx.services.clock.now(), tags=tags,
                    spec=UserGroupSpec(engine=engine, user_ids=ids))
    if not store.create(rec):
        raise e.UserGroupAlreadyExistsFault(f"User group {gid} already exists.")
    ctx.services.enqueue(rec.key)
    return group_shape(ctx, rec)


def _require_active(group: UserGroup) -> None:
    if group.api_status() != "active":
        raise e.InvalidUserGroupStateFault(
            f"User group {group.id} is not in the active state (it is {group.api_status()}).")


def modify_user_group(ctx: RequestContext, params: m.ModifyUserGroupMessage) -> m.UserGroup:
    group = get_group(ctx, params["UserGroupId"])
    _require_active(group)
    add = _ids(list(params.get("UserIdsToAdd", [])), "UserIdsToAdd")
    remove = _ids(list(params.get("UserIdsToRemove", [])), "UserIdsToRemove")
    both = sorted(set(add) & set(remove))
    if both:
        raise v.combination(f"{', '.join(both)} cannot be both added and removed.")
    engine = engine_of(params["Engine"]) if params.get("Engine") else group.spec.engine
    if not add and not remove and engine == group.spec.engine:
        raise v.combination("No modifications were requested: give UserIdsToAdd, UserIdsToRemove or Engine.")
    for uid in remove:
        get_user(ctx, uid)  # UserNotFound for a user that does not exist at all
        if uid not in group.spec.user_ids:
            raise v.invalid(f"User {uid} is not in user group {group.id}.")
    for uid in add:
        if uid in group.spec.user_ids:
            get_user(ctx, uid)
            raise v.invalid(f"User {uid} is already in user group {group.id}.")
    ids = [u for u in group.spec.user_ids if u not in remove] + add
    users = _members(ctx, engine, ids)
    fits_caches(ctx, group, group_minimum(engine, users))
    cluster_security.refuse_iam_change(ctx, group, users)
    caches = caches_using_group(ctx.services.store, group)
    if engine == "valkey" and any(rg.spec.engine == "redis" for rg in caches):
        raise v.combination(f"User group {group.id} is used by a Redis OSS replication group: it must stay redis.")

    def change(g: UserGroup) -> None:
        _require_active(g)  # checked again in the write: of two modifies at once, one wins
        g.spec.user_ids, g.spec.engine = ids, engine
        g.generation += 1

    updated = write(ctx, group, change)
    touch_caches(ctx, updated)
    return group_shape(ctx, updated)


def delete_user_group(ctx: RequestContext, params: m.DeleteUserGroupMessage) -> m.UserGroup:
    group = get_group(ctx, params["UserGroupId"])
    if group.api_status() == "deleting":
        raise e.InvalidUserGroupStateFault(f"User group {group.id} is already being deleted.")
    caches = caches_using_group(ctx.services.store, group)
    if caches:
        raise e.InvalidUserGroupStateFault(
            f"User group {group.id} is associated with replication group(s) {', '.join(rg.id for rg in caches)}: "
            "remove it from them (ModifyReplicationGroup UserGroupIdsToRemove) before deleting it.")

    return group_shape(ctx, write(ctx, group, request_delete))


def describe_user_groups(ctx: RequestContext, params: m.DescribeUserGroupsMessage) -> m.DescribeUserGroupsResult:
    store = ctx.services.store
    gid = params.get("UserGroupId")
    groups = [get_group(ctx, gid)] if gid else store.records(UserGroup, ctx.account, ctx.region)
    return cast(m.DescribeUserGroupsResult,
                v.listing("UserGroups", groups, params, lambda g: group_shape(ctx, g), store))


HANDLERS: HandlerTable = {
    "CreateUserGroup": create_user_group,
    "ModifyUserGroup": modify_user_group,
    "DeleteUserGroup": delete_user_group,
    "DescribeUserGroups": describe_user_groups,
}
