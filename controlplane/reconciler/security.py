"""A cache's security (state/acl.py's `node_acl`: TLS, AUTH tokens, RBAC users) as the engine's
NodeSecurity, for every node the reconcilers start, and its live changes on running nodes.

- The service's own admin user (`ADMIN_NAME`): one random password, made once and kept under the
  data directory (owner-only), never logged or shown. Every connection the engine makes to a
  secured node (probes, stats, replication, saves, failover) authenticates as it
  (engine/access.py), so all of that works whatever the customer does to `default`.
- Only nodes of caches with TLS get a NodeSecurity (AUTH tokens and user groups need TLS, as in
  AWS): a cache without any security runs exactly as before, without an ACL file or an AUTH round
  trip on every probe. So a node has security iff its cache had TLS when it started, and which
  TLS mode it started with is recorded on the node (NodeStatus.tls).
- AUTH tokens: the `default` user `on >tok1 >tok2 ~* &* +@all` (`nopass` too while connections
  without a token are still accepted, after a ROTATE from no AUTH). RBAC: the user group's users
  (a user named `default` replaces the node's default user; without one `default` is off).
- Memcached SASL (controlplane/sasl.py): nodes of a cluster asking for it get a NodeSecurity
  too, with or without TLS, its users those of the service's credentials file, read when the
  node starts (reconciler/sasl.py keeps running nodes up to date with the file).
- Certificates from the service CA (controlplane/tls.py), with every address a client may use for
  the node as subjectAltNames: its own, the group's endpoint addresses (they float between
  members), `localhost`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from controlplane.sasl import SERVICE_USER, SaslUsers
from controlplane.state.acl import NodeAcl
from controlplane.tls import LocalCa
from engine import AclUser, Credentials, NodeSecurity, TlsFiles, TlsMode, private_dir, with_iam_password, write_private

ADMIN_NAME = SERVICE_USER
ADMIN_FILE = "admin.secret"
# AWS's default user (and a token's) reaches every key, channel and command.
FULL_ACCESS: tuple[str, ...] = ("~*", "&*", "+@all")


def load_admin(data_dir: Path) -> Credentials:
    """The service's admin user: its password read from the data directory, made there (0600)
    the first time."""
    path = private_dir(Path(data_dir)) / ADMIN_FILE
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(32)
        write_private(path, password)
    return Credentials(ADMIN_NAME, password)


def acl_users(acl: NodeAcl, admin: Credentials) -> tuple[AclUser, ...]:
    """The customer's users a node of the cache has (empty: `default` without a password). An
    IAM user gets its internal password, derived from the admin's: only the IAM authenticator
    in front of the node logs in with it, for a client whose token it verified."""
    if acl.users:
        users = (AclUser(u.name, tuple(u.rules)) for u in acl.users)
        return tuple(with_iam_password(admin, u) if a.iam else u for a, u in zip(acl.users, users, strict=True))
    if acl.tokens:
        rules = ("on", *(f">{t}" for t in acl.tokens), *(("nopass",) if acl.open else ()), *FULL_ACCESS)
        return (AclUser("default", rules),)
    return ()


@dataclass
class NodeSecrets:
    """What the reconcilers need to secure nodes: the admin user, the service CA, and the
    memcached SASL credentials file (None: not configured)."""

    admin: Credentials
    ca: LocalCa
    sasl: SaslUsers | None = None

    @classmethod
    def under(cls, data_dir: Path, sasl_file: Path | None = None) -> NodeSecrets:
        return cls(load_admin(data_dir), LocalCa(data_dir), SaslUsers(sasl_file) if sasl_file is not None else None)

    def security(self, acl: NodeAcl, names: Sequence[str], plain_link: bool = False) -> NodeSecurity | None:
        """A node's NodeSecurity for `acl`, its certificate naming `names` (None: neither TLS
        nor SASL asked, so the node runs as before); `plain_link`: it replicates in plain text
        (TlsFiles.replication). Raises ValueError (controlplane.sasl's SaslFileError: no usable
        credentials file) and OSError."""
        if not acl.tls and not acl.sasl:
            return None
        tls = None
        if acl.tls:
            files = self.tls_files(names, "preferred" if acl.tls_mode == "preferred" else "required")
            tls = replace(files, replication=not plain_link)
        users = self.sasl_users() if acl.sasl else acl_users(acl, self.admin)
        return NodeSecurity(admin=self.admin, users=users, tls=tls, iam_realm=acl.iam_realm)

    def tls_files(self, names: Sequence[str], mode: TlsMode = "required") -> TlsFiles:
        """A certificate from the service CA naming `names` (and `localhost`), its key, the CA."""
        cert, key = self.ca.issue([*dict.fromkeys([*names, "localhost"])])
        return TlsFiles(str(cert), str(key), str(self.ca.ca_path), mode)

    def sasl_users(self) -> tuple[AclUser, ...]:
        """The memcached SASL users of the credentials file now, as node users (`on >password`).
        Raises ValueError (SaslFileError) when there is no usable file."""
        if self.sasl is None:
            raise ValueError("memcached SASL needs a credentials file: start elasticache-local with "
                             "ELASTICACHE_LOCAL_MEMCACHED_SASL_FILE=<file of user:password lines>")
        return tuple(AclUser(name, ("on", f">{password}")) for name, password in self.sasl.users().items())


def tls_of(acl: NodeAcl) -> str | None:
    """What NodeStatus.tls records for a node started with `acl`: its TLS mode, None without;
    `+iam` when an IAM authenticator fronts it (its ports differ: turning IAM on or off takes a
    restart, which the rolling restart does as for a change of TLS mode)."""
    if not acl.tls:
        return None
    return (acl.tls_mode or "required") + ("+iam" if acl.iam_realm else "")
