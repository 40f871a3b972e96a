"""CreateUser, ModifyUser, DeleteUser, DescribeUsers: RBAC users with AWS's rules. Passwords are
checked, then kept only as SHA-256 digests (what a node's ACL takes); no answer, event or log line
carries one, and no error message repeats one."""

from __future__ import annotations

import hashlib
from typing import cast

from controlplane.catalog import version_key
from controlplane.handlers import access_strings, cluster_security
from controlplane.handlers import validate as v
from controlplane.handlers.context import HandlerTable, RequestContext
from controlplane.handlers.rbac import (
    drop_member,
    engine_of,
    ensure_default_user,
    fits_caches,
    fits_group,
    get_user,
    rbac_id,
    request_delete,
    touch_caches,
    user_shape,
    write,
)
from controlplane.model import errors as e
from controlplane.model import messages as m
from controlplane.state.acl import groups_with_user
from controlplane.state.users import DEFAULT_USER_ID, DEFAULT_USER_NAME, AuthType, User, UserSpec

MAX_USERS = 1000  # AWS's quota per account and region
MAX_PASSWORDS = 2
PASSWORD_LENGTH = (16, 128)


# ---- authentication -----------------------------------------------------------------------------


def _digests(passwords: list[str]) -> list[str]:
    if len(passwords) > MAX_PASSWORDS:
        raise v.invalid(f"A user can have at most {MAX_PASSWORDS} passwords.")
    low, high = PASSWORD_LENGTH
    for i, password in enumerate(passwords, 1):
        if not low <= len(password) <= high or not all(" " <= c <= "~" for c in password):
            # The password itself is never repeated back.
            raise v.invalid(f"Password {i} is not valid: passwords must be {low}-{high} printable ASCII characters.")
    if len(set(passwords)) != len(passwords):
        raise v.invalid("The passwords of a user must be different from each other.")
    return [hashlib.sha256(p.encode()).hexdigest() for p in passwords]


def authentication(params: m.CreateUserMessage | m.ModifyUserMessage,
                   required: bool) -> tuple[AuthType, list[str]] | None:
    """(type, password digests) from Passwords, NoPasswordRequired or AuthenticationMode; None when
    the request says nothing of it (a modify that keeps them)."""
    passwords = list(params.get("Passwords", []))
    no_password = params.get("NoPasswordRequired")
    mode = params.get("AuthenticationMode")
    if mode is not None:
        if passwords or no_password is not None:
            raise v.combination("AuthenticationMode cannot be combined with Passwords or NoPasswordRequired.")
        kind = mode.get("Type")
        given = list(mode.get("Passwords", []))
        if kind == "password":
            if not given:
                raise v.invalid("AuthenticationMode Type password needs at least one password in Passwords.")
            return "password", _digests(given)
        if kind in ("no-password-required", "iam"):
            if given:
                raise v.combination(f"AuthenticationMode Type {kind} takes no Passwords.")
            return ("no-password" if kind == "no-password-required" else "iam"), []
        raise v.invalid(f"Invalid AuthenticationMode Type: {kind}. Valid values: password, no-password-required, "
                        "iam.")
    if no_password and passwords:
        raise v.combination("Passwords cannot be given together with NoPasswordRequired=true.")
    if passwords:
        return "password", _digests(passwords)
    if no_password:
        return "no-password", []
    if required or no_password is not None:
        raise v.invalid("A user needs Passwords, NoPasswordRequired=true, or an AuthenticationMode.")
    return None


def _iam_names(uid: str, user_name: str, auth: AuthType) -> None:
    if auth == "iam" and uid != user_name.lower():
        raise v.combination("A user with IAM authentication must have the same UserId and UserName.")


def _user_name(value: str) -> str:
    if not value or any(not ("!" <= c <= "~") for c in value):
        raise v.invalid("Invalid UserName: it must be printable ASCII characters without spaces.")
    return value


# ---- the operations -----------------------------------------------------------------------------


def create_user(ctx: RequestContext, params: m.CreateUserMessage) -> m.User:
    uid = rbac_id(params["UserId"], "UserId")
    store = ctx.services.store
    ensure_default_user(ctx)
    if store.get(ctx.key(User.KIND, uid), User) is not None:
        raise e.UserAlreadyExistsFault(f"User {uid} already exists.")
    name = _user_name(params["UserName"])
    engine = engine_of(params["Engine"])
    access = access_strings.parse(params["AccessString"])
    auth = authentication(params, required=True)
    assert auth is not None
    _iam_names(uid, name, auth[0])
    tags = v.tag_records(params.get("Tags", []))
    if len(store.records(User, ctx.account, ctx.region)) >= MAX_USERS:
        raise e.UserQuotaExceededFault(f"The quota of {MAX_USERS} users per region has been reached.")
    spec = UserSpec(user_name=name, engine=engine, access_string=access.text, rules=list(access.rules),
                    minimum_engine_version=_minimum(engine, access.minimum_version, auth[0]),
                    auth_type=auth[0], password_hashes=auth[1])
    rec = User(account=ctx.account, region=ctx.region, id=uid, created_at=ctx.services.clock.now(), tags=tags,
               spec=spec)
    if not store.create(rec):
        raise e.UserAlreadyExistsFault(f"User {uid} already exists.")
    ctx.services.enqueue(rec.key)
    return user_shape(ctx, rec)


def _minimum(engine: str, access: str, auth: AuthType) -> str:
    """The oldest engine version that runs the user: RBAC (Redis OSS 6.0, Valkey 7.2), what its
    access string needs, and IAM authentication (7.0)."""
    floor = ["7.2" if engine == "valkey" else "6.0", access, "7.0" if auth == "iam" else "6.0"]
    return max(floor, key=version_key)


def modify_user(ctx: RequestContext, params: m.ModifyUserMessage) -> m.User:
    rec = get_user(ctx, params["UserId"])
    if rec.id == DEFAULT_USER_ID:
        raise v.invalid("The default user cannot be modified. To change what the default user may do, create a "
                        "user with UserName default and put it in the user group instead.")
    if rec.api_status() != "active":
        raise e.InvalidUserStateFault(f"User {rec.id} is not in the active state (it is {rec.api_status()}).")
    spec = rec.spec.model_copy(deep=True)
    new_access, more = params.get("AccessString"), params.get("AppendAccessString")
    if new_access is not None and more is not None:
        raise v.combination("AccessString and AppendAccessString cannot be given together.")
    access = None
    if new_access is not None:
        access = access_strings.parse(new_access)
    elif more is not None:
        access = access_strings.parse(f"{spec.access_string} {more}")
    auth = authentication(params, required=False)
    if access is None and auth is None and params.get("Engine") is None:
        raise v.combination("No modifications were requested: give AccessString, AppendAccessString, Passwords, "
                            "NoPasswordRequired, AuthenticationMode or Engine.")
    if params.get("Engine") is not None:
        spec.engine = engine_of(params["Engine"])
    if access is not None:
        spec.access_string, spec.rules = access.text, list(access.rules)
    if auth is not None:
        _iam_names(rec.id, spec.user_name, auth[0])
        spec.auth_type, spec.password_hashes = auth
    first = access_strings.parse(spec.access_string).minimum_version if access is None else access.minimum_version
    spec.minimum_engine_version = _minimum(spec.engine, first, spec.auth_type)
    candidate = rec.model_copy(update={"spec": spec})
    for group in groups_with_user(ctx.services.store, rec):
        reason = fits_group(group.spec.engine, candidate)
        if reason:
            raise v.combination(f"{reason} It is in user group {group.id}.")
        fits_caches(ctx, group, spec.minimum_engine_version)
        cluster_security.refuse_iam_change(ctx, group, [candidate])

    def change(r: User) -> None:
        if r.api_status() != "active":  # checked again in the write: two modifies at once, one wins
            raise e.InvalidUserStateFault(f"User {r.id} is not in the active state (it is {r.api_status()}).")
        r.spec = spec
        r.generation += 1

    updated = write(ctx, rec, change)
    for group in groups_with_user(ctx.services.store, updated):
        touch_caches(ctx, group)
    return user_shape(ctx, updated)


def delete_user(ctx: RequestContext, params: m.DeleteUserMessage) -> m.User:
    """The user leaves every user group (and so every replication group), then is gone."""
    rec = get_user(ctx, params["UserId"])
    if rec.id == DEFAULT_USER_ID:
        raise v.invalid("The default user cannot be deleted.")
    if rec.api_status() == "deleting":
        raise e.InvalidUserStateFault(f"User {rec.id} is already being deleted.")
    groups = [g for g in groups_with_user(ctx.services.store, rec) if rec.id in g.spec.user_ids]
    if rec.spec.user_name == DEFAULT_USER_NAME and groups:
        raise e.DefaultUserAssociatedToUserGroupFault(
            f"User {rec.id} is the default user of user group(s) {', '.join(g.id for g in groups)}: a user group "
            "needs a user named default. Replace it in the group first.")

    updated = write(ctx, rec, request_delete)
    for group in groups:
        drop_member(ctx, group, rec.id)
    return user_shape(ctx, updated)


def describe_users(ctx: RequestContext, params: m.DescribeUsersMessage) -> m.DescribeUsersResult:
    store = ctx.services.store
    ensure_default_user(ctx)
    uid = params.get("UserId")
    users = [get_user(ctx, uid)] if uid else store.records(User, ctx.account, ctx.region)
    engine = params.get("Engine")
    if engine:
        users = [u for u in users if u.spec.engine == engine.lower()]
    for item in params.get("Filters", []):
        if item["Name"].lower() not in ("user-id", "userid"):
            raise v.combination(f"Invalid filter name: {item['Name']}. Valid filter: user-id.")
        wanted = {value.lower() for value in item["Values"]}
        users = [u for u in users if u.id in wanted]
    return cast(m.DescribeUsersResult, v.listing("Users", users, params, lambda u: user_shape(ctx, u), store))


HANDLERS: HandlerTable = {
    "CreateUser": create_user,
    "ModifyUser": modify_user,
    "DeleteUser": delete_user,
    "DescribeUsers": describe_users,
}
