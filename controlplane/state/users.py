"""RBAC users and user groups (Redis ACL users, as ElastiCache manages them).

A user's passwords are never stored: only their SHA-256 digests, which is what a node's ACL takes
(`#<hex>`), so nothing that reads a record can show a password. Statuses:

- user: `active`; `modifying` from a ModifyUser until every node of every replication group using
  it has the new ACL (`status.applied_generation`); `deleting` until no user group lists it, then gone.
  A new user is in no group, so there is nothing to apply: it is `active` at once (as AWS answers).
- user group: `creating` until the reconciler first looks; `modifying` from a change (its members,
  its engine, a replication group added or removed) until every replication group using it has
  it; `active`; `deleting`, then gone. `status.user_ids` is the membership every node has
  (UserIds); the spec's is what was asked (the difference is PendingChanges)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from controlplane.catalog import version_key
from controlplane.state.records import Record

DEFAULT_USER_ID = "default"
DEFAULT_USER_NAME = "default"
AuthType = Literal["password", "no-password", "iam"]


class UserSpec(BaseModel):
    user_name: str
    engine: str  # redis | valkey
    access_string: str  # as AWS shows it
    rules: list[str]  # the engine form of the access string: "on"/"off" first (handlers.access_strings)
    minimum_engine_version: str
    auth_type: AuthType
    password_hashes: list[str] = Field(default_factory=list, repr=False)  # SHA-256 hex digests, at most two
    delete_requested: bool = False


class UserStatus(BaseModel):
    # The spec generation every node using this user has. A new user's (generation 1) needs no
    # node: it is in no group yet.
    applied_generation: int = 1


class User(Record):
    KIND: ClassVar[str] = "user"

    spec: UserSpec
    status: UserStatus = Field(default_factory=UserStatus)

    def api_status(self) -> str:
        if self.spec.delete_requested:
            return "deleting"
        if self.status.applied_generation < self.generation:
            return "modifying"
        return "active"

    def acl_rules(self) -> list[str]:
        """What a node applies for this user, after `ACL SETUSER <user name> reset`: the access
        string's rules, then its passwords (as digests) or `nopass`. An IAM user gets no password
        rule: no static password opens it."""
        rules = list(self.spec.rules)
        if self.spec.auth_type == "no-password":
            rules.append("nopass")
        rules += [f"#{digest}" for digest in self.spec.password_hashes]
        return rules


class UserGroupSpec(BaseModel):
    engine: str  # redis | valkey
    user_ids: list[str] = Field(default_factory=list)  # the members asked for
    delete_requested: bool = False


class UserGroupStatus(BaseModel):
    phase: Literal["active", "modifying"] | None = None  # None: the reconciler has not looked yet
    user_ids: list[str] = Field(default_factory=list)  # the members every node using the group has


class UserGroup(Record):
    KIND: ClassVar[str] = "user-group"

    spec: UserGroupSpec
    status: UserGroupStatus = Field(default_factory=UserGroupStatus)

    def api_status(self) -> str:
        if self.spec.delete_requested:
            return "deleting"
        if self.status.phase is None:
            return "creating"
        if self.status.phase == "modifying" or self.observed_generation < self.generation:
            return "modifying"
        return "active"

    def users_to_add(self) -> list[str]:
        return [u for u in self.spec.user_ids if u not in self.status.user_ids]

    def users_to_remove(self) -> list[str]:
        return [u for u in self.status.user_ids if u not in self.spec.user_ids]


def builtin_default_user(account: str, region: str, created_at: datetime) -> User:
    """The user ElastiCache configures in every account and region: id and name `default`, every
    command and key, no password. It cannot be modified or deleted; to restrict the default user
    a group uses a user of its own named `default` instead."""
    return User(account=account, region=region, id=DEFAULT_USER_ID, created_at=created_at,
                spec=UserSpec(user_name=DEFAULT_USER_NAME, engine="redis", access_string="on ~* +@all",
                              rules=["on", "~*", "+@all"], minimum_engine_version="6.0", auth_type="no-password"))


def rbac_minimum(engine: str) -> str:
    """RBAC's first version of each engine: Redis OSS 6.0, Valkey 7.2."""
    return "7.2" if engine == "valkey" else "6.0"


def group_minimum(engine: str, members: list[User]) -> str:
    """A user group's MinimumEngineVersion: the highest any of its users needs."""
    return max([u.spec.minimum_engine_version for u in members] + [rbac_minimum(engine)], key=version_key)
