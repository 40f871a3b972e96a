"""A node's security without running it: what it renders into (config file, ACL file, memcached
and docker command lines), what the engine connects with (reach_of), that it survives the
persisted config, and the fake runtime's model of it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path, PurePosixPath

import pytest

from engine.access import TlsContexts, reach_of
from engine.adapters.memcached import argv as memcached_argv
from engine.adapters.memcached import sasl_files
from engine.adapters.redis import render_config
from engine.adapters.redis_security import acl_file, front_socket
from engine.runtime.base import NodeConfig, RuntimeError_, config_from_dict, config_to_dict
from engine.runtime.docker.secure import node_env, node_files
from engine.runtime.docker.spec import node_command, stored_config
from engine.runtime.fake import FakeRuntime
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles, check_security, effective_users

ADMIN = Credentials("ecl-admin", "admin-Secret-1")
USERS = (AclUser.parse("default on >tok-Old-0001 >tok-New-0002 ~* &* +@all"), AclUser.parse("app on >app-pw ~app:*"))
TLS = TlsFiles("/ca/node.crt", "/ca/node.key", "/ca/ca.crt", "required")
NODE = NodeConfig("n1", "redis", "7.0.15", "127.0.100.5", 6379, 64)


def secured(config: NodeConfig = NODE, users: tuple[AclUser, ...] = USERS, tls: TlsFiles | None = TLS) -> NodeConfig:
    return dataclasses.replace(config, security=NodeSecurity(ADMIN, users, tls))


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_the_persisted_config_keeps_security() -> None:
    config = secured(tls=dataclasses.replace(TLS, mode="preferred"))
    again = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert again == config and again.security == config.security
    assert config_from_dict(json.loads(json.dumps(config_to_dict(NODE)))).security is None
    # A docker node's label holds the same JSON.
    label = {"Config": {"Labels": {"elasticache-local.config": json.dumps(config_to_dict(config))}}}
    assert stored_config(label) == config


def test_passwords_stay_out_of_reprs() -> None:
    text = repr(secured())
    assert "admin-Secret-1" not in text and "tok-Old-0001" not in text and "ecl-admin" in text


def test_tls_required_puts_tls_alone_on_the_port() -> None:
    conf = lines(render_config(secured(), Path("/n1")))
    for line in ("port 0", "tls-port 6379", "tls-cert-file /ca/node.crt", "tls-key-file /ca/node.key",
                 "tls-ca-cert-file /ca/ca.crt", "tls-auth-clients no", "tls-replication yes",
                 "aclfile /n1/users.acl", "masteruser ecl-admin", "masterauth admin-Secret-1"):
        assert line in conf, line
    assert not any(line.startswith("port 6379") for line in conf)


def test_a_node_behind_an_iam_front_listens_for_it_on_an_owner_only_unix_socket() -> None:
    config = secured()
    assert config.security is not None
    config = dataclasses.replace(config, security=dataclasses.replace(config.security, iam_realm="a/b/c"))
    conf = lines(render_config(config, Path("/n1"), backend=(40001, 40002)))
    assert {"port 40001", "tls-port 40002", "unixsocket /n1/front.sock", "unixsocketperm 700"} <= set(conf)
    # A directory too deep for a unix socket's path: the front reaches the node's port over TCP.
    deep = Path("/" + "d" * 120)
    assert front_socket(deep) is None
    assert not any(line.startswith("unixsocket") for line in lines(render_config(config, deep, backend=(1, 2))))
    # Without IAM, no socket.
    plain = lines(render_config(secured(tls=dataclasses.replace(TLS, mode="preferred")), Path("/n1"), backend=(1, 2)))
    assert not any(line.startswith("unixsocket") for line in plain)


def test_tls_preferred_puts_the_node_behind_the_forwarder() -> None:
    config = secured(tls=dataclasses.replace(TLS, mode="preferred"))
    conf = lines(render_config(config, Path("/n1"), backend=(40001, 40002)))
    assert {"port 40001", "tls-port 40002", "replica-announce-port 6379"} <= set(conf)
    with pytest.raises(ValueError, match="forwarder"):
        render_config(config, Path("/n1"))  # only a runtime with a forwarder can run it


def test_a_cluster_node_with_tls_announces_its_client_port_and_pins_its_bus() -> None:
    """CLUSTER SLOTS and MOVED lead TLS clients to the port they reach the node on, never to a
    private port behind the forwarder; the bus stays where peers MEET it (client port + 10000)."""
    cluster = dataclasses.replace(NODE, settings={"cluster-enabled": "yes", "cluster-announce-port": "6379"})
    for mode, backend in (("required", None), ("preferred", (40001, 40002))):
        config = secured(cluster, tls=dataclasses.replace(TLS, mode=mode))  # type: ignore[arg-type]
        conf = set(lines(render_config(config, Path("/n1"), backend=backend)))
        assert {"tls-cluster yes", "cluster-announce-tls-port 6379", "cluster-announce-port 6379",
                "cluster-port 16379", "tls-replication yes"} <= conf, mode
    old = secured(dataclasses.replace(cluster, version="6.2.14"))
    conf = set(lines(render_config(old, Path("/n1"))))
    assert "tls-cluster yes" in conf and not any(line.startswith("cluster-announce-tls-port") for line in conf)
    plain = set(lines(render_config(dataclasses.replace(cluster, security=None), Path("/n1"))))
    assert not any(line.startswith(("tls-cluster", "cluster-port")) for line in plain)


def test_a_plain_text_replication_link_logs_in_as_default_without_tls() -> None:
    """While TLS is turned on or off on a running group: the primary may have neither TLS nor the admin user."""
    config = secured(users=(), tls=dataclasses.replace(TLS, mode="preferred", replication=False))
    conf = lines(render_config(config, Path("/n1"), backend=(40001, 40002)))
    assert "tls-replication no" in conf and "aclfile /n1/users.acl" in conf
    assert not any(line.startswith(("masteruser", "masterauth")) for line in conf)
    again = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert again.security is not None and again.security.tls is not None and not again.security.tls.replication


def test_the_acl_file_holds_hashes_the_admin_first_and_default_off_when_left_out() -> None:
    text = acl_file(secured(users=(AclUser.parse("app on >app-pw ~app:* +get"),)))
    assert "app-pw" not in text and "admin-Secret-1" not in text
    assert lines(text) == [
        f"user ecl-admin reset on ~* &* +@all #{hashlib.sha256(b'admin-Secret-1').hexdigest()}",
        f"user app reset on #{hashlib.sha256(b'app-pw').hexdigest()} ~app:* +get",
        "user default reset off",
    ]
    # No users: default without a password, as a node without security.
    assert lines(acl_file(secured(users=())))[1] == "user default reset on nopass ~* &* +@all"


def test_older_engines_get_what_they_understand_or_a_clear_refusal() -> None:
    old = dataclasses.replace(NODE, version="6.0.20")
    assert effective_users(NodeSecurity(ADMIN), channels=False)[0].rules[:3] == ("on", "~*", "+@all")
    assert "&*" not in acl_file(secured(old, tls=None)).splitlines()[0]
    with pytest.raises(ValueError, match="need Redis 6"):
        render_config(secured(dataclasses.replace(NODE, version="5.0.14"), tls=None), Path("/n1"))
    with pytest.raises(ValueError, match="no TLS"):
        render_config(secured(dataclasses.replace(NODE, version="5.0.14"), users=()), Path("/n1"))


@pytest.mark.parametrize(("security", "message"), [
    (NodeSecurity(Credentials("default", "x")), "admin user name"),
    (NodeSecurity(Credentials("ecl-admin", "")), "needs a password"),
    (NodeSecurity(ADMIN, (AclUser("ecl-admin", ("on",)),)), "name of the service's own user"),
    (NodeSecurity(ADMIN, (AclUser("a", ("on",)), AclUser("a", ("off",)))), "listed twice"),
    (NodeSecurity(ADMIN, (AclUser("a", ("on", ">two words")),)), "no whitespace"),
    (NodeSecurity(ADMIN, (AclUser("bad name", ()),)), "invalid ACL user name"),
])
def test_invalid_security_is_refused(security: NodeSecurity, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_security(security)
    with pytest.raises(ValueError, match=message):
        render_config(dataclasses.replace(NODE, security=security), Path("/n1"))


def test_a_setting_may_not_undo_the_security() -> None:
    with pytest.raises(ValueError, match="requirepass"):
        render_config(dataclasses.replace(secured(), settings={"requirepass": "x"}), Path("/n1"))


def test_the_engine_reaches_a_node_as_its_admin_over_tls(tmp_path: Path) -> None:
    from controlplane.tls import LocalCa

    ca = LocalCa(tmp_path)
    contexts = TlsContexts()
    plain = reach_of(dataclasses.replace(NODE, settings={"requirepass": "pw"}), contexts)
    assert (plain.tls, plain.auth()) == (None, ["AUTH", "pw"])
    reach = reach_of(secured(tls=dataclasses.replace(TLS, ca_file=str(ca.ca_path))), contexts)
    assert reach.auth() == ["AUTH", "ecl-admin", "admin-Secret-1"] and reach.tls is not None
    assert reach_of(secured(tls=dataclasses.replace(TLS, ca_file=str(ca.ca_path))), contexts).tls is reach.tls
    # Behind a preferred forwarder: straight to the node's own plain port.
    preferred = dataclasses.replace(TLS, ca_file=str(ca.ca_path), mode="preferred")
    direct = reach_of(secured(tls=preferred), contexts, plain_port=40001)
    assert (direct.port, direct.tls, direct.username) == (40001, None, "ecl-admin")
    # Memcached logs in only where SASL is on (the customer has users).
    mc = dataclasses.replace(NODE, engine="memcached", version="1.6.18", port=11211)
    assert reach_of(secured(mc, users=(), tls=None), contexts).auth() is None
    assert reach_of(secured(mc, tls=None), contexts).username == "ecl-admin"


def test_memcached_tls_and_sasl_on_its_command_line() -> None:
    mc = dataclasses.replace(NODE, engine="memcached", version="1.6.18", port=11211, settings={"-o": "modern"})
    args = memcached_argv(secured(mc), "memcached", pidfile=None)
    assert "-S" in args and "-Z" in args
    assert args[args.index("-o") + 1] == "modern,ssl_chain_cert=/ca/node.crt,ssl_key=/ca/node.key"
    assert "-S" not in memcached_argv(secured(mc, users=()), "memcached", pidfile=None)
    with pytest.raises(ValueError, match="no TLS mode preferred"):
        memcached_argv(secured(mc, tls=dataclasses.replace(TLS, mode="preferred")), "memcached", pidfile=None)
    files, env = sasl_files(secured(mc), PurePosixPath("/n/sasl"))
    assert env == {"SASL_CONF_PATH": "/n/sasl", "MEMCACHED_SASL_PWDB": "/n/sasl/pwdb"}
    # The admin, and each user's last password (SASL keeps one).
    assert files["pwdb"] == "ecl-admin:admin-Secret-1\ndefault:tok-New-0002\napp:app-pw\n"
    assert "sasldb_path: /n/sasl/sasldb2" in files["memcached.conf"]


def test_a_docker_node_gets_its_files_in_the_volume_and_no_password_on_its_command_line() -> None:
    data = PurePosixPath("/data")
    config = secured()
    command = node_command(config)
    assert "admin-Secret-1" not in " ".join(command)
    assert command[1:3] == ["--include", "/data/secrets.conf"]
    assert command[command.index("--tls-cert-file") + 1] == "/data/tls/node.crt"
    assert command[command.index("--aclfile") + 1] == "/data/users.acl"
    files = {f.path: f for f in node_files(config, data)}
    assert files["secrets.conf"].content == b"masterauth admin-Secret-1\n"
    assert files["tls/node.key"].source == Path("/ca/node.key")
    assert b"user ecl-admin" in files["users.acl"].content
    with pytest.raises(ValueError, match="docker runtime"):
        node_command(secured(tls=dataclasses.replace(TLS, mode="preferred")))
    mc = secured(dataclasses.replace(NODE, engine="memcached", version="1.6.18", port=11211), tls=None)
    assert node_env(mc, data)["SASL_CONF_PATH"] == "/data/sasl"
    assert node_files(NODE, data) == ()


def test_the_fake_runtime_records_users_applied_to_nodes_with_security() -> None:
    fake = FakeRuntime()
    fake.start(secured())
    fake.start(dataclasses.replace(NODE, name="plain", host="127.0.100.6"))
    rotated = (AclUser.parse("default on >tok-New-0002 ~* +@all"),)
    fake.apply_users("n1", rotated)
    assert fake.applied_users == [("n1", rotated)]
    security = fake.config_of("n1").security
    assert security is not None and security.users == rotated and security.tls == TLS
    with pytest.raises(RuntimeError_, match="without security"):
        fake.apply_users("plain", rotated)
    with pytest.raises(RuntimeError_, match="own user"):
        fake.apply_users("n1", (AclUser.parse("ecl-admin on"),))
    fake.refuse_auth("n1")
    assert "WRONGPASS" in (fake.probe("n1", 0.1).error or "")
    fake.kill("n1")
    with pytest.raises(RuntimeError_):
        fake.apply_users("n1", rotated)
