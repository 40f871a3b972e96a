"""A redis/valkey node's security in its configuration: the ACL file (the service's admin user
and the customer's users), replication as the admin user, and TLS listeners.

Users live in an ACL file beside the config (`aclfile`), not in `user` directives: then
`ACL SAVE` persists what `apply_users` changed at run time, and the file holds password hashes
(`#<sha256>`), never clear text. The runtime writes it owner-only at every start.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from engine.access import has_acl
from engine.runtime.base import NodeConfig
from engine.security import TlsFiles, acl_line, check_security, effective_users
from engine.versions import parse_version

__all__ = ["ACL_FILE", "FRONT_SOCKET", "MANAGED", "TLS_COPIES", "acl_file", "front_socket", "security_directives",
           "tls_paths"]

ACL_FILE = "users.acl"
# Where a runtime whose nodes cannot read this machine's files (docker) copies the TLS files,
# relative to the node's directory.
TLS_COPIES = ("tls/node.crt", "tls/node.key", "tls/ca.crt")

# What security sets: a setting may not set it too (a second password would bypass the users).
MANAGED = frozenset({
    "requirepass", "masterauth", "masteruser", "aclfile", "user", "port", "tls-port", "tls-cert-file",
    "tls-key-file", "tls-ca-cert-file", "tls-ca-cert-dir", "tls-auth-clients", "tls-replication", "tls-cluster",
    "tls-client-cert-file", "tls-client-key-file", "replica-announce-port", "slave-announce-port",
    "unixsocket", "unixsocketperm",
})
# The unix socket an IAM front reaches its node on, in the node's directory (see front_socket).
FRONT_SOCKET = "front.sock"
UNIX_PATH_MAX = 100  # sun_path is 104-108 bytes, by platform


def front_socket(node_dir: PurePath) -> PurePath | None:
    """Where a node behind an IAM front listens for it besides its private plain port: a unix
    socket, owner-only. The front's hop to the node over it costs about a quarter less CPU per
    request than over loopback TCP (no TCP stack, no conntrack; bench/iam.py), which on a small
    machine is throughput. None where the path is too long for a unix socket: TCP then."""
    path = node_dir / FRONT_SOCKET
    return path if len(str(path).encode()) <= UNIX_PATH_MAX else None


def channels_known(config: NodeConfig) -> bool:
    """Whether the engine knows `&channel` rules (Redis 6.2+, Valkey)."""
    return config.engine == "valkey" or parse_version(config.version) >= (6, 2)


def acl_file(config: NodeConfig) -> str:
    """The ACL file of a node with security: one `user` line per user, admin first."""
    assert config.security is not None
    users = effective_users(config.security, channels=channels_known(config))
    return "".join(acl_line(u) + "\n" for u in users)


def tls_paths(tls: TlsFiles, node_dir: PurePath, *, copied: bool) -> tuple[str, str, str]:
    """(cert, key, CA) as the node sees them: where they are on this machine, or their copies in
    the node's directory (TLS_COPIES)."""
    if copied:
        cert, key, ca = (str(node_dir / c) for c in TLS_COPIES)
        return cert, key, ca
    return tls.cert_file, tls.key_file, tls.ca_file


def security_directives(config: NodeConfig, node_dir: PurePath, *, backend: tuple[int, int] | None = None,
                        tls_copied: bool = False) -> tuple[dict[str, str], dict[str, str]]:
    """(config directives, files for the node's directory) of the node's security; empty without
    one. `backend`: TLS mode preferred (or an IAM authenticator) puts the node's plain and TLS
    listeners on these ports of its address, behind the runtime's forwarder on its own port. Raises ValueError."""
    security = config.security
    if security is None:
        return {}, {}
    check_security(security)
    clash = sorted(k for k in config.settings if k.lower() in MANAGED)
    if clash:
        raise ValueError(f"setting(s) {', '.join(clash)} cannot be set on a node with users or TLS: "
                         "its security sets them")
    directives: dict[str, str] = {}
    files: dict[str, str] = {}
    if has_acl(config):
        directives["aclfile"] = _quote(node_dir / ACL_FILE)
        files[ACL_FILE] = acl_file(config)
        if security.tls is None or security.tls.replication:
            # Replicas authenticate to their primary as the admin user. A plain-text link (TLS being
            # turned on or off) logs in as `default`: a primary without TLS has no admin user.
            directives["masteruser"] = security.admin.name
            directives["masterauth"] = _quote(security.admin.password)
    elif security.users:
        raise ValueError(f"redis {config.version} has no ACL users: they need Redis 6.0 or later")
    tls = security.tls
    if tls is None:
        return directives, files
    if not has_acl(config):
        raise ValueError(f"redis {config.version} has no TLS: it needs Redis 6.0 or later")
    cert, key, ca = tls_paths(tls, node_dir, copied=tls_copied)
    if tls.mode == "required" and security.iam_realm is None:
        directives["port"] = "0"  # the node's port speaks TLS only
        directives["tls-port"] = str(config.port)
    else:
        if backend is None:
            raise ValueError("TLS mode preferred and an IAM authenticator need the node's own ports behind the "
                             "forwarder (the runtime's)")
        directives["port"], directives["tls-port"] = str(backend[0]), str(backend[1])
        # Replicas tell their primary the port clients reach them on, not their private one.
        directives["replica-announce-port"] = str(config.port)
        socket_path = front_socket(node_dir) if security.iam_realm is not None else None
        if socket_path is not None:
            directives["unixsocket"] = _quote(socket_path)
            directives["unixsocketperm"] = "700"
    directives.update({
        "tls-cert-file": _quote(cert),
        "tls-key-file": _quote(key),
        "tls-ca-cert-file": _quote(ca),
        # As on AWS: clients present no certificate.
        "tls-auth-clients": "no",
        "tls-replication": "yes" if tls.replication else "no",
    })
    settings = _lower(config.settings)
    if settings.get("cluster-enabled", "no").lower() == "yes":
        directives.update(_cluster_tls(config, settings))
    return directives, files


def _cluster_tls(config: NodeConfig, settings: Mapping[str, str]) -> dict[str, str]:
    """A cluster node with TLS: the bus over TLS, and the client port it announces (CLUSTER
    SLOTS / SHARDS, MOVED / ASK) is the one clients reach it on, TLS or plain alike, never a
    private port behind the runtime's forwarder (mode preferred, IAM). The bus port is pinned
    to client port + 10000, where peers MEET it, not derived from a private TLS port (these
    settings are Redis 7.0's; Valkey has them all)."""
    if config.engine == "redis" and parse_version(config.version) < (7,):
        return {"tls-cluster": "yes"}
    announced = settings.get("cluster-announce-port", str(config.port))
    return {"tls-cluster": "yes", "cluster-announce-tls-port": announced, "cluster-announce-port": announced,
            "cluster-port": settings.get("cluster-port", str(config.port + 10000))}


def _lower(settings: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in settings.items()}


def _quote(value: PurePath | str) -> str:
    """One config-file argument (redis splits lines with sdssplitargs: a quote anywhere opens one)."""
    text = str(value)
    if any(c.isspace() or c in "\"'\\" for c in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text
