"""Security on the wire of a cache (a standalone cluster or a replication group): in-transit
encryption (TLS), AUTH tokens, RBAC user groups and memcached SASL. `SecuritySpec` is what was asked (handlers);
`AppliedSecurity` is what every node enforces (the reconciler, once all of them do).

The AUTH tokens are secrets. They are stored (the nodes need them: `requirepass`/`masterauth` or
the default user's ACL) but no shape, JSON answer, event, log line or template ever reads them:
`repr=False` keeps them out of reprs and tracebacks, and the shapes read only `auth_enabled`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

TransitMode = Literal["preferred", "required"]
TokenStrategy = Literal["ROTATE", "SET", "DELETE"]


class SecuritySpec(BaseModel):
    transit_encryption: bool = False
    transit_mode: TransitMode | None = None  # with transit_encryption: what plain connections may do
    # The live AUTH tokens, oldest first (at most two: ROTATE keeps the previous one). SECRET.
    auth_tokens: list[str] = Field(default_factory=list, repr=False)
    # After a ROTATE on a cache that had no token: connections without one are still accepted,
    # until a SET (AWS: "supports the AUTH token ... in addition to connecting without authentication").
    auth_open: bool = False
    auth_seq: int = 0  # which token change the tokens are (0: never set)
    auth_strategy: TokenStrategy | None = None  # how the last change was made (ROTATING / SETTING while pending)
    auth_modified_at: datetime | None = None  # AuthTokenLastModifiedDate
    user_group_ids: list[str] = Field(default_factory=list)  # RBAC (replication groups only; at most one)
    # Memcached SASL (tag elasticache-local:sasl, controlplane/sasl.py): the users of the service's
    # credentials file, whose passwords never enter the store. Set at creation only.
    sasl: bool = False

    def auth_enabled(self) -> bool:
        return bool(self.auth_tokens)


class AppliedSecurity(BaseModel):
    """What every node of a cache enforces. Written by the reconciler only after the last node has
    it; a difference from `state.acl.desired_security` is a pending change (PendingModifiedValues,
    a user group or user reading "modifying")."""

    transit_encryption: bool = False
    transit_mode: TransitMode | None = None
    auth_seq: int = 0
    auth_enabled: bool = False
    user_group_ids: list[str] = Field(default_factory=list)
    sasl: bool = False  # memcached: every node runs with SASL
    # RBAC: user id -> the generation of that user whose ACL (rules and passwords) the nodes have.
    acl_users: dict[str, int] = Field(default_factory=dict)


def asked(spec: SecuritySpec) -> AppliedSecurity:
    """What the spec asks of every node, but the users' ACL (state.acl.desired_security adds it)."""
    return AppliedSecurity(transit_encryption=spec.transit_encryption, transit_mode=spec.transit_mode,
                           auth_seq=spec.auth_seq, auth_enabled=spec.auth_enabled(),
                           user_group_ids=list(spec.user_group_ids), sasl=spec.sasl)


def enforced(applied: AppliedSecurity | None, announced: bool) -> AppliedSecurity | None:
    """What a replication group's nodes enforce, as its shape and status read it: None (show what
    was asked) only while it was never available; one available with nothing recorded was made
    without TLS, AUTH or user groups (nothing is recorded for those), and enforces none of them
    while TLS is being turned on."""
    return applied if applied is not None or not announced else AppliedSecurity()


def security_status(spec: SecuritySpec, applied: AppliedSecurity | None) -> str | None:
    """What an otherwise available cache reads while its nodes do not enforce what was asked of
    TLS and AUTH (None: they do): `creating` until the reconciler first records it, `modifying`
    after. The users' ACL is not looked at here (state.acl.security_in_sync has it); nothing is
    asked of a cache without TLS, AUTH or user groups, so such a cache is never held up."""
    now = applied or AppliedSecurity()
    if asked(spec) == now.model_copy(update={"acl_users": {}}):
        return None
    return "creating" if applied is None else "modifying"


def shown(spec: SecuritySpec, applied: AppliedSecurity | None) -> dict[str, Any]:
    """The members of a CacheCluster or ReplicationGroup shape that say what its nodes enforce:
    what was recorded as applied, or (nothing recorded yet: a new cache) what was asked."""
    now = applied if applied is not None else asked(spec)
    out: dict[str, Any] = {"AuthTokenEnabled": now.auth_enabled, "TransitEncryptionEnabled": now.transit_encryption}
    if spec.auth_modified_at is not None:
        out["AuthTokenLastModifiedDate"] = spec.auth_modified_at
    if now.transit_encryption and now.transit_mode:
        out["TransitEncryptionMode"] = now.transit_mode
    return out


def pending(spec: SecuritySpec, applied: AppliedSecurity | None, groups: bool) -> dict[str, Any]:
    """PendingModifiedValues members: what was asked and not yet on every node. `groups`: the
    shape has UserGroups (replication groups)."""
    if applied is None:
        return {}
    out: dict[str, Any] = {}
    if spec.auth_seq != applied.auth_seq and spec.auth_strategy in ("ROTATE", "SET"):
        out["AuthTokenStatus"] = "ROTATING" if spec.auth_strategy == "ROTATE" else "SETTING"
    if spec.transit_encryption != applied.transit_encryption:
        out["TransitEncryptionEnabled"] = spec.transit_encryption
    if spec.transit_mode != applied.transit_mode and spec.transit_mode is not None:
        out["TransitEncryptionMode"] = spec.transit_mode
    add = [g for g in spec.user_group_ids if g not in applied.user_group_ids]
    remove = [g for g in applied.user_group_ids if g not in spec.user_group_ids]
    if groups and (add or remove):
        change: dict[str, Any] = {}
        if add:
            change["UserGroupIdsToAdd"] = add
        if remove:
            change["UserGroupIdsToRemove"] = remove
        out["UserGroups"] = change
    return out
