"""What a cache's nodes must enforce (TLS, AUTH tokens, RBAC users), what they do, and who waits
for the difference to close.

THE HOOK: `ReplicationGroupStatus.security_applied` (and `CacheClusterStatus.security_applied`) is
written by the reconciler, and only after EVERY node of the cache enforces it, with
`desired_security(store, cache)` as read when it started applying. Everything else follows from it:
the cache itself reads `creating` (nothing recorded yet) or `modifying` while its TLS, tokens or user
groups are not enforced (`security.security_status`), a user reads `active` once each cache using it
has its generation (`user_in_sync`), a user group once each cache using it has its members
(`group_in_sync`), and a cache's PendingModifiedValues (AuthTokenStatus, UserGroups,
TransitEncryption*) are the difference. What a node applies comes from `node_acl`.

Written by reconciler/replication_groups/security.py (replication groups) and
reconciler/cache_clusters.py (memcached clusters with TLS), which also enqueue the users and
groups of the cache."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.state.records import CacheCluster, ReplicationGroup, ResourceKey
from controlplane.state.security import AppliedSecurity, asked
from controlplane.state.store import Store
from controlplane.state.users import User, UserGroup

Cache = CacheCluster | ReplicationGroup


@dataclass(frozen=True)
class AclUser:
    name: str  # the ACL user name (a user's UserName; `default` replaces the node's own default user)
    rules: tuple[str, ...]  # ACL SETUSER rules after `reset`, passwords as `#<sha256>`
    iam: bool = False  # AuthenticationMode iam: its password is the IAM authenticator's (no rule here)


@dataclass(frozen=True)
class NodeAcl:
    """What a node of a cache must enforce. SECRET (tokens): never logged or shown."""

    tls: bool
    tls_mode: str | None  # "preferred": plain connections accepted too; "required": TLS only
    tokens: tuple[str, ...]  # AUTH tokens, oldest first (requirepass/masterauth: the newest)
    open: bool  # connections without a token are accepted too (ROTATE from no AUTH)
    users: tuple[AclUser, ...]  # RBAC: replaces every ACL user (empty: no RBAC)
    sasl: bool = False  # memcached SASL: the users of the credentials file (controlplane/sasl.py)
    # Set when some user authenticates with IAM: the realm the node's IAM authenticator checks
    # tokens for (iam_realm(); controlplane/auth/iam_token.py's CacheTarget.of_realm reads it).
    iam_realm: str | None = None


def applied_security(cache: Cache) -> AppliedSecurity:
    """What every node enforces; a cache the reconciler recorded nothing for enforces nothing."""
    return cache.status.security_applied or AppliedSecurity()


def group_members(store: Store, cache: Cache) -> list[User]:
    """The users of the cache's user groups (as asked), in group order."""
    out: list[User] = []
    for group_id in cache.spec.security.user_group_ids:
        group = store.get(ResourceKey(UserGroup.KIND, cache.account, cache.region, group_id), UserGroup)
        for user_id in group.spec.user_ids if group is not None else []:
            user = store.get(ResourceKey(User.KIND, cache.account, cache.region, user_id), User)
            if user is not None and user not in out:
                out.append(user)
    return out


def desired_security(store: Store, cache: Cache) -> AppliedSecurity:
    wanted = asked(cache.spec.security)
    wanted.acl_users = {u.id: u.generation for u in group_members(store, cache)}
    return wanted


def security_in_sync(store: Store, cache: Cache) -> bool:
    return applied_security(cache) == desired_security(store, cache)


def node_acl(store: Store, cache: Cache) -> NodeAcl:
    spec = cache.spec.security
    users = tuple(AclUser(u.spec.user_name, tuple(u.acl_rules()), u.spec.auth_type == "iam")
                  for u in group_members(store, cache))
    realm = iam_realm(cache.account, cache.region, cache.id) if any(u.iam for u in users) else None
    return NodeAcl(tls=spec.transit_encryption, tls_mode=spec.transit_mode, tokens=tuple(spec.auth_tokens),
                   open=spec.auth_open, sasl=spec.sasl, users=users, iam_realm=realm)


def iam_realm(account: str, region: str, cache_id: str) -> str:
    """What the nodes of a cache with IAM users call it (NodeSecurity.iam_realm): the engine
    hands it back with each token to check."""
    return f"{account}/{region}/{cache_id}"


# ---- who uses what ----------------------------------------------------------------------------


def caches_using_group(store: Store, group: UserGroup) -> list[ReplicationGroup]:
    """Replication groups that use the user group, or whose nodes still have it."""
    return [rg for rg in store.records(ReplicationGroup, group.account, group.region)
            if group.id in rg.spec.security.user_group_ids or group.id in applied_security(rg).user_group_ids]


def groups_with_user(store: Store, user: User) -> list[UserGroup]:
    """User groups that list the user, as asked or as their nodes have it."""
    return [g for g in store.records(UserGroup, user.account, user.region)
            if user.id in g.spec.user_ids or user.id in g.status.user_ids]


def group_in_sync(store: Store, group: UserGroup) -> bool:
    """Every replication group using the user group enforces its members (or, one that dropped
    it, no longer enforces it)."""
    for rg in caches_using_group(store, group):
        applied = applied_security(rg)
        if group.id not in rg.spec.security.user_group_ids:
            if group.id in applied.user_group_ids:
                return False
        elif group.id not in applied.user_group_ids or set(applied.acl_users) != {
                u.id for u in group_members(store, rg)}:
            return False
    return True


def user_in_sync(store: Store, user: User) -> bool:
    """Every replication group using one of the user's groups has this generation of the user."""
    for group in groups_with_user(store, user):
        if user.id not in group.spec.user_ids:
            continue
        for rg in caches_using_group(store, group):
            if group.id in rg.spec.security.user_group_ids and \
                    applied_security(rg).acl_users.get(user.id) != user.generation:
                return False
    return True
