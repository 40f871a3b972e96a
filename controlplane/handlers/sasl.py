"""Memcached SASL asked for with the tag `elasticache-local:sasl` (controlplane/sasl.py): checked
on CreateCacheCluster, where it is recorded in `spec.security.sasl`, and kept as it was created by
AddTagsToResource and RemoveTagsFromResource (turning SASL on or off takes the text protocol away
from clients or gives it back: create a new cluster instead). No message here quotes the
credentials file."""

from __future__ import annotations

from collections.abc import Mapping

from controlplane.handlers import validate as v
from controlplane.handlers.context import RequestContext
from controlplane.sasl import SASL_TAG, SaslFileError, read_users, sasl_tag
from controlplane.state.records import CacheCluster, Record, ReplicationGroup, Tag


def on_create(ctx: RequestContext, engine: str, tags: list[Tag]) -> bool:
    """Whether a new cache's tags ask for SASL; refused (InvalidParameterValue or
    InvalidParameterCombination) for a value other than true/false, an engine other than
    memcached, or a service without a usable credentials file."""
    if not _asked(_value(tags)):
        return False
    if engine != "memcached":
        raise v.combination(f"The tag {SASL_TAG}=true asks for memcached SASL: it is for Memcached clusters only "
                            f"(this cache runs {engine}; use AuthToken or user groups).")
    path = ctx.services.settings.memcached_sasl_file
    if path is None:
        raise v.combination(f"The tag {SASL_TAG}=true needs the service's memcached SASL users: start "
                            "elasticache-local with ELASTICACHE_LOCAL_MEMCACHED_SASL_FILE=<file of user:password "
                            "lines, readable by its owner only>.")
    try:
        read_users(path)
    except SaslFileError as exc:
        raise v.invalid(f"Memcached SASL ({SASL_TAG}=true): {exc}") from None
    return True


def check_retag(rec: Record, tags: Mapping[str, str]) -> None:
    """A tag change on `rec` that would leave `tags` (key -> value): on a cache, the SASL tag must
    still say what the cache was created with (on other resources it means nothing)."""
    if not isinstance(rec, (CacheCluster, ReplicationGroup)) or tags.get(SASL_TAG) == _value(rec.tags):
        return
    now = _asked(tags.get(SASL_TAG))
    if now != rec.spec.security.sasl:
        raise v.combination(f"The tag {SASL_TAG} is set when a Memcached cluster is created: SASL cannot be turned "
                            f"{'on' if now else 'off'} on an existing cache (it takes the text protocol away from "
                            "its clients, or gives it back). Create a new cluster instead.")


def _value(tags: list[Tag]) -> str | None:
    return next((t.value for t in tags if t.key == SASL_TAG), None)


def _asked(value: str | None) -> bool:
    asked = sasl_tag(value)
    if asked is None:
        raise v.invalid(f"Invalid value for tag {SASL_TAG}: {value}. Valid values: true, false.")
    return asked
