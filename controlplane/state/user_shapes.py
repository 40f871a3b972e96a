"""Users and user groups as the model's User and UserGroup shapes. A user's passwords are never
read here (only how many there are)."""

from __future__ import annotations

from typing import Any

from controlplane.state.arns import arn
from controlplane.state.users import User, UserGroup, group_minimum


def user(rec: User, group_ids: list[str]) -> dict[str, Any]:
    authentication: dict[str, Any] = {"Type": rec.spec.auth_type}
    if rec.spec.auth_type == "password":
        authentication["PasswordCount"] = len(rec.spec.password_hashes)
    return {
        "UserId": rec.id,
        "UserName": rec.spec.user_name,
        "Status": rec.api_status(),
        "Engine": rec.spec.engine,
        "MinimumEngineVersion": rec.spec.minimum_engine_version,
        "AccessString": rec.spec.access_string,
        "UserGroupIds": group_ids,
        "Authentication": authentication,
        "ARN": arn(rec.region, rec.account, rec.KIND, rec.id),
    }


def user_group(rec: UserGroup, members: list[User], replication_groups: list[str]) -> dict[str, Any]:
    """`members`: the users the group lists (as asked); MinimumEngineVersion is the highest they need."""
    creating = rec.status.phase is None
    out: dict[str, Any] = {
        "UserGroupId": rec.id,
        "Status": rec.api_status(),
        "Engine": rec.spec.engine,
        # A new group's members are its own; later, the members every node has, and the rest pending.
        "UserIds": list(rec.spec.user_ids if creating else rec.status.user_ids),
        "MinimumEngineVersion": group_minimum(rec.spec.engine, members),
        "ReplicationGroups": replication_groups,
        "ServerlessCaches": [],
        "ARN": arn(rec.region, rec.account, rec.KIND, rec.id),
    }
    pending: dict[str, Any] = {}
    if not creating and rec.users_to_add():
        pending["UserIdsToAdd"] = rec.users_to_add()
    if not creating and rec.users_to_remove():
        pending["UserIdsToRemove"] = rec.users_to_remove()
    if pending:
        out["PendingChanges"] = pending
    return out

