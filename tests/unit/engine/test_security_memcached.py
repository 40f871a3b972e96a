"""Memcached nodes with security on the process runtime, against real memcached processes: TLS
(pymemcache with a TLS context) and SASL (tests/memcached_sasl.py's binary-protocol SASL PLAIN
client: pymemcache speaks no SASL)."""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from controlplane.tls import LocalCa
from engine.adapters.memcached import find_saslpasswd2
from engine.runtime.base import NodeConfig, RuntimeError_
from engine.runtime.process import ProcessRuntime
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles
from tests.memcached_sasl import AUTH_ERROR, Binary
from tests.requires import needs
from tests.runtimes import BINARIES, ProcessKit, serving

pytestmark = needs(BINARIES.get("memcached"), "memcached is not installed")
needs_sasl = needs(find_saslpasswd2(), "saslpasswd2 is not installed (sasl2-bin; deploy/bootstrap.sh installs it)")

ADMIN = Credentials("ecl-admin", "admin-Secret-1")


def secure(kit: ProcessKit, rt: ProcessRuntime, name: str, *users: str, ca: LocalCa | None = None) -> NodeConfig:
    config = kit.config(rt, name, "memcached")
    files = None
    if ca is not None:
        cert, key = ca.issue([config.host])
        files = TlsFiles(str(cert), str(key), str(ca.ca_path), "required")
    return dataclasses.replace(config, security=NodeSecurity(ADMIN, tuple(AclUser.parse(u) for u in users), files))


def test_memcached_tls_serves_tls_clients_only(kit: ProcessKit, tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    rt = kit.runtime()
    node = secure(kit, rt, "mt", ca=ca)
    rt.start(node)
    assert serving(rt, "mt").version  # the probe speaks TLS
    context = ssl.create_default_context(cafile=str(ca.ca_path))
    tls = Client((node.host, node.port), tls_context=context, timeout=5)
    tls.set("k", "v")
    assert tls.get("k") == b"v"
    plain = Client((node.host, node.port), timeout=2)
    with pytest.raises(Exception):  # noqa: B017 - closed, reset or timed out: any way, no answer
        plain.get("k")
    stats = rt.node_stats("mt", 2.0)
    assert stats is not None and int(stats.fields["cmd_set"]) >= 1


@needs_sasl
def test_memcached_sasl_takes_the_right_password_only(kit: ProcessKit) -> None:
    rt = kit.runtime()
    node = secure(kit, rt, "ms", "alice on >alice-Secret-1")
    rt.start(node)
    assert serving(rt, "ms").ok  # the admin logs in for the probe
    stranger = Binary(node.host, node.port)
    assert stranger.get(b"k")[0] == AUTH_ERROR  # nothing without a login (and then closed)
    stranger.close()
    guesser = Binary(node.host, node.port)
    assert guesser.login("alice", "wrong-password") == AUTH_ERROR
    guesser.close()
    alice = Binary(node.host, node.port)
    assert alice.login("alice", "alice-Secret-1") == 0
    assert alice.set(b"k", b"v") == 0
    assert alice.get(b"k") == (0, b"v")
    stats = rt.node_stats("ms", 2.0)
    assert stats is not None and int(stats.fields["cmd_set"]) >= 1  # stats over SASL, as the admin
    # A new password, live: new logins take it, the logged-in connection stays.
    rt.apply_users("ms", [AclUser.parse("alice on >alice-Secret-2")])
    again = Binary(node.host, node.port)
    assert again.login("alice", "alice-Secret-1") == AUTH_ERROR
    assert again.login("alice", "alice-Secret-2") == 0
    assert alice.get(b"k") == (0, b"v")
    with pytest.raises(RuntimeError_, match="takes a restart"):
        rt.apply_users("ms", [])  # SASL off: the text protocol comes back only with a restart
    alice.close()
    again.close()


@needs_sasl
def test_memcached_sasl_over_tls(kit: ProcessKit, tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    rt = kit.runtime()
    node = secure(kit, rt, "mst", "alice on >alice-Secret-1", ca=ca)
    rt.start(node)
    assert serving(rt, "mst").ok
    conn = Binary(node.host, node.port, ssl.create_default_context(cafile=str(ca.ca_path)))
    assert conn.login("alice", "alice-Secret-1") == 0
    assert conn.set(b"k", b"v") == 0
    assert conn.get(b"k") == (0, b"v")
    conn.close()
