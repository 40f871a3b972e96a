"""A docker node's security files: what goes into its volume before each start, since a
container cannot read this machine's files (the TLS certificate, key and CA are copied in), and
what stays off its command line (`ps` on the host shows it): the admin password replicas
authenticate with goes into an included file.

Files in the volume are readable by whoever the image runs the node as (the archive cannot
know that user): the volume is the node's alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

from engine.adapters import memcached as memcached_adapter
from engine.adapters.redis import DataFile
from engine.adapters.redis_security import TLS_COPIES, security_directives
from engine.runtime.base import NodeConfig
from engine.security import sasl_users

__all__ = ["SECRETS_FILE", "SECRET_DIRECTIVES", "node_env", "node_files", "secrets_conf"]

SECRETS_FILE = "secrets.conf"
SECRET_DIRECTIVES = frozenset({"masterauth"})


def secrets_conf(config: NodeConfig, data: PurePosixPath) -> str:
    """The redis directives kept off the command line, as a config file to `include`."""
    directives = security_directives(config, data, tls_copied=True)[0]
    return "".join(f"{k} {v}\n" for k, v in directives.items() if k in SECRET_DIRECTIVES)


def node_files(config: NodeConfig, data: PurePosixPath) -> tuple[DataFile, ...]:
    """The security files of node `config` in its volume mounted at `data` (none without
    security). Raises ValueError (invalid security; memcached SASL without saslpasswd2 here and
    without the password-file build in the image is found at the node's first login)."""
    security = config.security
    if security is None:
        return ()
    files: list[DataFile] = []
    if security.tls is not None:
        tls = security.tls
        files += [DataFile(path, Path(source)) for path, source in
                  zip(TLS_COPIES, (tls.cert_file, tls.key_file, tls.ca_file), strict=True)]
    if config.engine == "memcached":
        sasl_dir = data / memcached_adapter.SASL_DIR
        texts, _ = memcached_adapter.sasl_files(config, sasl_dir)
        files += [DataFile(f"{memcached_adapter.SASL_DIR}/{name}", content=text.encode())
                  for name, text in texts.items()]
        if texts and memcached_adapter.find_saslpasswd2() is not None:
            files.append(DataFile(f"{memcached_adapter.SASL_DIR}/sasldb2", content=_sasldb(config)))
        return tuple(files)
    files += [DataFile(name, content=text.encode()) for name, text in security_directives(config, data)[1].items()]
    files.append(DataFile(SECRETS_FILE, content=secrets_conf(config, data).encode()))
    return tuple(files)


def node_env(config: NodeConfig, data: PurePosixPath) -> dict[str, str]:
    """Environment variables of the node's container (memcached SASL's configuration)."""
    if config.engine != "memcached" or config.security is None:
        return {}
    return memcached_adapter.sasl_files(config, data / memcached_adapter.SASL_DIR)[1]


def _sasldb(config: NodeConfig) -> bytes:
    """A Cyrus sasldb of the node's SASL users, made here (the image may have no saslpasswd2).
    The realm is this host's name: with host networking the container has the same."""
    assert config.security is not None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sasldb2"
        memcached_adapter.write_sasldb(path, sasl_users(config.security))
        return path.read_bytes()
