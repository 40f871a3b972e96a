"""Who may talk to a node, and how: TLS, the service's own admin user, the customer's ACL users.

A node's security travels in its NodeConfig (`security`), so runtimes keep it beside the node
and a re-adopted node keeps it. Three parts:

- `tls`: the node's certificate, key and the CA that signed it. Mode "required": the node's
  port speaks TLS only. Mode "preferred" (AWS's transitional mode): TLS and plain text both on
  the node's port, which redis cannot do on one socket, so the runtime puts a first-byte
  sniffing forwarder there and the node listens on two private ports behind it
  (engine/proxy/sniff.py). `replication` False: the node replicates from its primary in plain
  text as the `default` user, not over TLS as the admin user: the link that works while some
  node of its group has no TLS (TLS being turned on or off on a running group; `link_works`).
- `admin`: the service's own user. Every connection the engine makes (probes, stats,
  replication commands, saves) authenticates as it, and replicas authenticate to their primary
  as it, so all of that keeps working whatever the customer does to the `default` user. It is
  on every redis/valkey node with full permissions, and in memcached's SASL database when SASL
  is on.
- `users`: the customer's ACL users, each a Redis ACL rule list (`default on >pw ~* &* +@all`,
  `app on >pw ~app:* +get`, `default off`), applied in order. Empty: the `default` user with no
  password (no AUTH, as without security). Not empty and without `default`: `default` is off.
  Memcached has no ACLs: its SASL users are the users that are `on` with a `>password`.
- `iam_realm`: set when the node's users include IAM users, whose password is a short-lived
  token no node can check. The runtime puts an IAM authenticator (engine/proxy/iam_auth.py) on
  every address the node is reached on, its port, and the node listens on private ports behind
  it, as in TLS mode preferred. The authenticator asks the runtime's verifier (set by whoever
  owns the runtime: `set_iam_verifier`) whether a token opens this realm as a user; the realm
  is opaque to the engine (the control plane's name for the cache).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "ADMIN_RULES",
    "AclUser",
    "Credentials",
    "NodeSecurity",
    "TlsFiles",
    "TlsMode",
    "acl_line",
    "check_security",
    "effective_users",
    "link_works",
    "sasl_users",
    "security_from_dict",
    "security_to_dict",
]

TlsMode = Literal["preferred", "required"]
TLS_MODES: tuple[TlsMode, ...] = ("preferred", "required")

# Everything, on every key and channel: what the service itself may do on a node.
ADMIN_RULES: tuple[str, ...] = ("on", "~*", "&*", "+@all")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files on this machine: the node's certificate (with every address clients use as a
    subjectAltName), its private key, and the CA certificate the engine verifies it with."""

    cert_file: str
    key_file: str
    ca_file: str
    mode: TlsMode = "required"
    replication: bool = True  # replicate over TLS as the admin user (False: plain text, as `default`)


@dataclass(frozen=True)
class Credentials:
    """A user name and its password (the service's admin user)."""

    name: str
    password: str = ""

    def __repr__(self) -> str:  # never in logs or tracebacks
        return f"Credentials(name={self.name!r}, password='***')"


@dataclass(frozen=True)
class AclUser:
    """One ACL user: its name and its rules, in Redis ACL syntax (`on`, `>password`, `#<sha256>`,
    `~pattern`, `&channel`, `+@category`, ...), applied in order to a user reset first."""

    name: str
    rules: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AclUser:
        """`"app on >pw ~app:* +get"` -> AclUser("app", ("on", ">pw", "~app:*", "+get"))."""
        parts = text.split()
        if not parts:
            raise ValueError("an ACL user needs a name")
        return cls(parts[0], tuple(parts[1:]))

    def passwords(self) -> tuple[str, ...]:
        """The clear-text passwords its rules add (`>password`)."""
        return tuple(rule[1:] for rule in self.rules if rule.startswith(">"))

    def enabled(self) -> bool:
        """Whether its rules leave it `on` (the last of on/off/reset wins; a user starts off)."""
        state = False
        for rule in self.rules:
            if rule in ("on", "off", "reset"):
                state = rule == "on"
        return state

    def __repr__(self) -> str:
        hidden = tuple(">***" if r.startswith(">") else r for r in self.rules)
        return f"AclUser(name={self.name!r}, rules={hidden!r})"


@dataclass(frozen=True)
class NodeSecurity:
    admin: Credentials
    users: tuple[AclUser, ...] = ()
    tls: TlsFiles | None = None
    iam_realm: str | None = None


def check_security(security: NodeSecurity) -> None:
    """Raise ValueError for what would not render into a config file or an ACL line: names
    outside [A-Za-z0-9_.@-], rules with whitespace, an admin without a password, a customer
    user that takes the admin's name, a user listed twice, an unknown TLS mode."""
    admin = security.admin
    if not _NAME.match(admin.name) or admin.name == "default":
        raise ValueError(f"invalid admin user name {admin.name!r}")
    if not admin.password or any(c.isspace() for c in admin.password):
        raise ValueError("the admin user needs a password without whitespace")
    seen: set[str] = set()
    for user in security.users:
        if not _NAME.match(user.name):
            raise ValueError(f"invalid ACL user name {user.name!r}")
        if user.name == admin.name:
            raise ValueError(f"ACL user {user.name!r} has the name of the service's own user")
        if user.name in seen:
            raise ValueError(f"ACL user {user.name!r} is listed twice")
        seen.add(user.name)
        for rule in user.rules:
            if not rule or any(c.isspace() or c == "\0" for c in rule):
                raise ValueError(f"invalid rule {_shown(rule)!r} of ACL user {user.name!r}: no whitespace allowed")
    tls = security.tls
    if security.iam_realm is not None and (tls is None or not security.iam_realm.strip()):
        raise ValueError("an IAM authenticator needs TLS and a realm")
    if tls is not None:
        if tls.mode not in TLS_MODES:
            raise ValueError(f"invalid TLS mode {tls.mode!r} (known: {', '.join(TLS_MODES)})")
        for path in (tls.cert_file, tls.key_file, tls.ca_file):
            if not path or any(c in path for c in "\r\n\0"):
                raise ValueError(f"invalid TLS file path {path!r}")


def link_works(replica: NodeSecurity | None, primary: NodeSecurity | None) -> bool:
    """Whether a redis/valkey replica secured with `replica` can replicate from a primary secured
    with `primary` (None: no security): over TLS as the admin user, the primary needs TLS; in
    plain text as `default` (no security, or TlsFiles.replication False), the primary needs a
    plain-text port (no TLS, or mode preferred) and a `default` user without a password."""
    if replica is not None and replica.tls is not None and replica.tls.replication:
        return primary is not None and primary.tls is not None
    if primary is None:
        return True
    return (primary.tls is None or primary.tls.mode == "preferred") and not primary.users


def _shown(rule: str) -> str:
    return ">***" if rule.startswith(">") else rule


def effective_users(security: NodeSecurity, *, channels: bool = True) -> tuple[AclUser, ...]:
    """Every user a redis/valkey node has, in order: the admin, then the customer's users, and
    `default` with no password when there are none, or off when they leave it out. `channels`:
    the engine knows `&` rules (Redis 6.2+, Valkey); older ones allow every channel anyway."""
    admin_rules = ADMIN_RULES if channels else tuple(r for r in ADMIN_RULES if not r.startswith("&"))
    admin = AclUser(security.admin.name, (*admin_rules, ">" + security.admin.password))
    users = security.users or (AclUser("default", ("on", "nopass", *admin_rules[1:])),)
    if not any(u.name == "default" for u in users):
        users = (*users, AclUser("default", ("off",)))
    return (admin, *users)


def acl_line(user: AclUser) -> str:
    """The user as a line of an ACL file: `user <name> reset <rules>`, clear-text passwords
    stored as their SHA-256 (`#<hex>`), which redis accepts in place of `>password`."""
    rules = ["reset"]
    for rule in user.rules:
        if rule.startswith(">"):
            rules.append("#" + hashlib.sha256(rule[1:].encode()).hexdigest())
        elif rule.startswith("<"):
            rules.append("!" + hashlib.sha256(rule[1:].encode()).hexdigest())
        else:
            rules.append(rule)
    return " ".join(["user", user.name, *rules])


def sasl_users(security: NodeSecurity) -> dict[str, str]:
    """Memcached's SASL users (name -> password): the admin and each enabled customer user with a
    password (its last one: SASL keeps one per user). Empty when the customer has none: no SASL."""
    found = {u.name: u.passwords()[-1] for u in security.users if u.enabled() and u.passwords()}
    if not found:
        return {}
    return {security.admin.name: security.admin.password, **found}


def security_to_dict(security: NodeSecurity) -> dict[str, Any]:
    tls = security.tls
    return {
        "admin": {"name": security.admin.name, "password": security.admin.password},
        "users": [{"name": u.name, "rules": list(u.rules)} for u in security.users],
        "tls": None if tls is None else {"cert_file": tls.cert_file, "key_file": tls.key_file,
                                         "ca_file": tls.ca_file, "mode": tls.mode,
                                         "replication": tls.replication},
        "iam_realm": security.iam_realm,
    }


def security_from_dict(data: Mapping[str, Any]) -> NodeSecurity:
    admin = data["admin"]
    tls = data.get("tls")
    mode = str(tls.get("mode", "required")) if tls else "required"
    if mode not in TLS_MODES:
        raise ValueError(f"invalid TLS mode {mode!r}")
    return NodeSecurity(
        admin=Credentials(str(admin["name"]), str(admin["password"])),
        users=tuple(AclUser(str(u["name"]), tuple(str(r) for r in u.get("rules", ()))) for u in data.get("users", ())),
        tls=None if not tls else TlsFiles(str(tls["cert_file"]), str(tls["key_file"]), str(tls["ca_file"]),
                                          "preferred" if mode == "preferred" else "required",
                                          bool(tls.get("replication", True))),
        iam_realm=None if data.get("iam_realm") is None else str(data["iam_realm"]),
    )
