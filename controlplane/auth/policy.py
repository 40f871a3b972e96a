"""IAM identity policies, read from a policy file and evaluated as IAM does: an explicit Deny
wins, then an Allow, and anything not allowed is denied.

The policy file maps who to their policies: a user name, an access key id, an account id, or
"*" (everyone), each to one policy document or a list of them. Every document that names the
caller applies (a user's, their key's, their account's and "*"'s together), as IAM combines the
policies attached to a user and their groups.

    {"alice": {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "elasticache:Describe*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["elasticache:CreateCacheCluster", "elasticache:DeleteCacheCluster"],
         "Resource": "arn:aws:elasticache:*:*:cluster:team-a-*",
         "Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}}]}}

Supported: Action / NotAction and Resource / NotResource with `*` and `?` wildcards; Condition
operators StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
StringLike, StringNotLike, ArnEquals, ArnLike, ArnNotEquals, ArnNotLike, Bool and Null, each
with `...IfExists` and the ForAnyValue: / ForAllValues: qualifiers; context keys as Access
builds them (aws:RequestedRegion, aws:ResourceTag/<key>, aws:RequestTag/<key>, aws:TagKeys,
aws:username, aws:PrincipalAccount, aws:SecureTransport).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from controlplane.auth.keys import AccessConfigError, Identity

# A context key (lower-case) -> its values in this request; None: the request has no such key.
Context = Callable[[str], Sequence[str] | None]

# operator -> (how one value is compared, negated)
_STRING = {"StringEquals": ("equals", False), "StringNotEquals": ("equals", True),
           "StringEqualsIgnoreCase": ("iequals", False), "StringNotEqualsIgnoreCase": ("iequals", True),
           "StringLike": ("like", False), "StringNotLike": ("like", True),
           "ArnEquals": ("like", False), "ArnLike": ("like", False),
           "ArnNotEquals": ("like", True), "ArnNotLike": ("like", True),
           "Bool": ("iequals", False)}


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM's wildcards: `*` any run of characters, `?` one; nothing else is special."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str | bool | int) for i in items):
        raise AccessConfigError(f"{where}: expected a string or a list of strings")
    return tuple(str(i).lower() if isinstance(i, bool) else str(i) for i in items)


@dataclass(frozen=True, slots=True)
class Condition:
    key: str  # lower-case
    compare: str  # equals | iequals | like | null
    negated: bool
    if_exists: bool
    quantifier: str  # "" | "forallvalues" | "foranyvalue"
    values: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]

    def holds(self, context: Context) -> bool:
        found = context(self.key)
        if self.compare == "null":
            return (not found) == (self.values[0].lower() == "true")
        if not found:
            return self.if_exists or self.negated or self.quantifier == "forallvalues"
        outcomes = (self._matches(v) != self.negated for v in found)
        return all(outcomes) if self.quantifier == "forallvalues" else any(outcomes)

    def _matches(self, value: str) -> bool:
        if self.compare == "equals":
            return value in self.values
        if self.compare == "iequals":
            return value.lower() in (v.lower() for v in self.values)
        return any(p.fullmatch(value) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class Statement:
    allow: bool
    actions: tuple[re.Pattern[str], ...]
    actions_negated: bool  # NotAction
    resources: tuple[re.Pattern[str], ...]
    resources_negated: bool  # NotResource
    conditions: tuple[Condition, ...]

    def applies(self, action: str, resource: str, context: Context) -> bool:
        if any(p.fullmatch(action) for p in self.actions) == self.actions_negated:
            return False
        if any(p.fullmatch(resource) for p in self.resources) == self.resources_negated:
            return False
        return all(c.holds(context) for c in self.conditions)


def decide(statements: Iterable[Statement], action: str, resource: str, context: Context) -> Decision:
    allowed = False
    for statement in statements:
        if statement.applies(action, resource, context):
            if not statement.allow:
                return Decision.EXPLICIT_DENY
            allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


class PolicySet:
    """The statements of a policy file, by whom they name."""

    def __init__(self, by_principal: dict[str, tuple[Statement, ...]]) -> None:
        self._by_principal = by_principal
        self._cache: dict[tuple[str, str | None, str | None], tuple[Statement, ...]] = {}

    def statements_for(self, who: Identity) -> tuple[Statement, ...]:
        cache_key = (who.account, who.access_key_id, who.user)
        found = self._cache.get(cache_key)
        if found is None:
            names = dict.fromkeys(n for n in ("*", who.account, who.access_key_id, who.user) if n)
            found = tuple(s for n in names for s in self._by_principal.get(n, ()))
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[cache_key] = found
        return found


def load_policies(path: Path) -> PolicySet:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise AccessConfigError(f"cannot read the policy file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise AccessConfigError(f"the policy file {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise AccessConfigError(f"{path}: expected an object mapping a user name, access key id, account id or "
                                '"*" to a policy document (or a list of them)')
    by_principal: dict[str, tuple[Statement, ...]] = {}
    for principal, documents in data.items():
        docs = documents if isinstance(documents, list) else [documents]
        by_principal[principal] = tuple(s for n, doc in enumerate(docs)
                                        for s in _document(doc, f"{path}: {principal!r} policy {n}"))
    return PolicySet(by_principal)


def _document(doc: Any, where: str) -> list[Statement]:
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise AccessConfigError(f"{where}: a policy document is an object with a Statement")
    if doc.get("Version", "2012-10-17") not in ("2012-10-17", "2008-10-17"):
        raise AccessConfigError(f"{where}: Version must be 2012-10-17")
    statements = doc["Statement"] if isinstance(doc["Statement"], list) else [doc["Statement"]]
    return [_statement(s, f"{where} statement {n}") for n, s in enumerate(statements)]


def _statement(raw: Any, where: str) -> Statement:
    if not isinstance(raw, dict):
        raise AccessConfigError(f"{where}: a statement is an object")
    if "Principal" in raw or "NotPrincipal" in raw:
        raise AccessConfigError(f"{where}: identity policies have no Principal (the file's key says whom it is for)")
    if raw.get("Effect") not in ("Allow", "Deny"):
        raise AccessConfigError(f"{where}: Effect must be Allow or Deny")
    actions, actions_negated = _either(raw, "Action", "NotAction", where)
    resources, resources_negated = _either(raw, "Resource", "NotResource", where)
    return Statement(
        allow=raw["Effect"] == "Allow",
        actions=tuple(_glob(a, ignore_case=True) for a in actions), actions_negated=actions_negated,
        resources=tuple(_glob(r, ignore_case=False) for r in resources), resources_negated=resources_negated,
        conditions=_conditions(raw.get("Condition", {}), where))


def _either(raw: dict[str, Any], name: str, negated_name: str, where: str) -> tuple[tuple[str, ...], bool]:
    if (name in raw) == (negated_name in raw):
        raise AccessConfigError(f"{where}: needs exactly one of {name} and {negated_name}")
    return (_strings(raw[name], f"{where} {name}"), False) if name in raw else (
        _strings(raw[negated_name], f"{where} {negated_name}"), True)


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, dict):
        raise AccessConfigError(f"{where}: Condition is an object of operators")
    out: list[Condition] = []
    for operator, entries in raw.items():
        quantifier, _, base = operator.rpartition(":")
        if quantifier not in ("", "ForAnyValue", "ForAllValues"):
            raise AccessConfigError(f"{where}: unknown qualifier {quantifier!r}")
        if_exists = base.endswith("IfExists") and base != "IfExists"
        base = base.removesuffix("IfExists") if if_exists else base
        if base == "Null":
            compare, negated = "null", False
        elif base in _STRING:
            compare, negated = _STRING[base]
        else:
            raise AccessConfigError(f"{where}: condition operator {operator!r} is not supported (supported: "
                                    f"{', '.join(sorted([*_STRING, 'Null']))}, with IfExists)")
        if not isinstance(entries, dict):
            raise AccessConfigError(f"{where}: {operator} maps condition keys to values")
        for key, value in entries.items():
            values = _strings(value, f"{where} {operator} {key}")
            out.append(Condition(key.lower(), compare, negated, if_exists, quantifier.lower(), values,
                                 tuple(_glob(v, ignore_case=False) for v in values) if compare == "like" else ()))
    return tuple(out)
