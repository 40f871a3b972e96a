"""AccessString: a Redis ACL rule list (https://valkey.io/topics/acl/), checked rule by rule as
ElastiCache checks it, and kept in two forms: the text AWS shows, and the rules the engine applies.

ElastiCache's own limits on top of the ACL syntax: no passwords in the string (`>pw`, `<pw`,
`#hash`, `!hash`, `nopass`, `resetpass`: ElastiCache manages them, from Passwords), no `reset`
(it would drop those passwords), and no granting a restricted command (AWS's list, below). A user
is `off` unless the string says `on` (AWS: "If neither is specified, the user is assigned off"); the
engine form always says which, first, so a node never falls back on its own default."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.catalog import version_key
from controlplane.handlers import validate as v
from controlplane.handlers.acl_commands import CATEGORIES, COMMANDS, CONTAINERS

# ElastiCache's restricted commands (AWS: "Restricted commands"): refused when granted by name.
RESTRICTED = frozenset({"bgrewriteaof", "bgsave", "config", "debug", "migrate", "module", "psync", "replicaof",
                        "save", "shutdown", "slaveof", "sync"})
_PASSWORD_RULES = ("nopass", "resetpass")
_PASSWORD_PREFIXES = (">", "<", "#", "!")
# Rules valid inside a selector as well as at the top.
_KEY_RULES = {"allkeys": "6.0", "resetkeys": "6.0", "allchannels": "6.2", "resetchannels": "6.2",
              "allcommands": "6.0", "nocommands": "6.0"}
_TOP_RULES = {"clearselectors": "7.0", "sanitize-payload": "6.2", "skip-sanitize-payload": "6.2"}
BASE_VERSION = "6.0"  # RBAC itself: Redis OSS 6.0


@dataclass(frozen=True)
class AccessString:
    text: str  # as AWS shows it: the rules as given, one space apart
    rules: tuple[str, ...]  # what a node applies after `ACL SETUSER <name> reset`: "on"/"off" first
    minimum_version: str  # the oldest engine version that knows every rule


def parse(value: str) -> AccessString:
    """The access string's rules, each checked; InvalidParameterValue naming the first bad one."""
    tokens = _tokens(value)
    if not tokens:
        raise v.invalid("The access string must contain at least one rule, e.g. \"on ~* +@all\".")
    enabled = "off"
    rules: list[str] = []
    minimum = BASE_VERSION
    for token in tokens:
        lower = token.lower()
        if lower in ("on", "off"):
            enabled = lower  # the last one given wins, as in ACL SETUSER
            continue
        if token.startswith("("):
            since = _selector(token)
        elif lower in _TOP_RULES:
            since = _TOP_RULES[lower]
        else:
            since = _rule(token)
        minimum = max(minimum, since, key=version_key)
        rules.append(token)
    return AccessString(text=" ".join(tokens), rules=(enabled, *rules), minimum_version=minimum)


def _tokens(value: str) -> list[str]:
    """Rules split on whitespace, a selector `( ... )` kept whole (its rules one space apart)."""
    out: list[str] = []
    words = value.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("(") and not word.endswith(")"):
            j = i
            while j < len(words) and not words[j].endswith(")"):
                j += 1
            if j == len(words):
                raise v.invalid(f"Unclosed selector in the access string: {' '.join(words[i:])!r}.")
            word = " ".join(words[i:j + 1])
            i = j
        out.append(word)
        i += 1
    return out


def _selector(token: str) -> str:
    """`(rule rule ...)`: a Redis 7.0 selector; only key, channel and command rules inside."""
    inner = token[1:-1].split()
    if not inner:
        raise v.invalid("An empty selector \"()\" is not a valid access string rule.")
    since = "7.0"
    for rule in inner:
        if rule.lower() in ("on", "off") or rule.lower() in _TOP_RULES or rule.startswith("("):
            raise v.invalid(f"The rule {rule!r} is not allowed inside the selector {token!r}.")
        since = max(since, _rule(rule), key=version_key)
    return since


def _rule(token: str) -> str:
    """Check one key, channel or command rule; the engine version it needs."""
    lower = token.lower()
    if lower in _PASSWORD_RULES or token.startswith(_PASSWORD_PREFIXES):
        raise v.invalid("Passwords cannot be given in an access string: set them with Passwords (or "
                        "AuthenticationMode); ElastiCache manages them.")
    if lower == "reset":
        raise v.invalid("The rule \"reset\" is not allowed in an access string: it would remove the user's "
                        "passwords, which ElastiCache manages.")
    if lower in _KEY_RULES:
        return _KEY_RULES[lower]
    if token.startswith("~"):
        return _pattern(token, token[1:], "6.0")
    if lower.startswith(("%r~", "%w~", "%rw~")):
        return _pattern(token, token.split("~", 1)[1], "7.0")
    if token.startswith("&"):
        return _pattern(token, token[1:], "6.2")
    if token.startswith(("+", "-")):
        return _command(token)
    raise v.invalid(f"Unknown rule {token!r} in the access string. Rules are on, off, ~pattern, %R~pattern, "
                    "%W~pattern, &channel, allkeys, resetkeys, allchannels, resetchannels, +command, -command, "
                    "+command|subcommand, +@category, -@category, allcommands, nocommands and (selectors).")


def _pattern(token: str, pattern: str, since: str) -> str:
    if not pattern:
        raise v.invalid(f"The rule {token!r} has an empty pattern.")
    return since


def _command(token: str) -> str:
    grant, name = token[0] == "+", token[1:].lower()
    if name.startswith("@"):
        category = name[1:]
        if category != "all" and category not in CATEGORIES:
            raise v.invalid(f"Unknown command category {category!r} in the rule {token!r}. Categories: all, "
                            f"{', '.join(sorted(CATEGORIES))}.")
        return BASE_VERSION
    command, _, sub = name.partition("|")
    if command not in COMMANDS:
        raise v.invalid(f"Unknown command {command!r} in the rule {token!r}.")
    if grant and command in RESTRICTED:
        raise v.invalid(f"{command.upper()} is a restricted command in ElastiCache and cannot be granted "
                        f"(rule {token!r}).")
    if not sub:
        if "|" in name:
            raise v.invalid(f"The rule {token!r} names no subcommand after \"|\".")
        return BASE_VERSION
    if command in CONTAINERS:
        if sub not in CONTAINERS[command]:
            raise v.invalid(f"Unknown subcommand {sub!r} of {command.upper()} in the rule {token!r}.")
        return BASE_VERSION if grant else "7.0"
    if not grant:
        # ACL refuses to remove a first argument: only containers' subcommands can be taken away.
        raise v.invalid(f"The rule {token!r} cannot be used: {command.upper()} has no subcommands, and a first "
                        "argument can only be allowed (+command|argument), not removed.")
    return BASE_VERSION
