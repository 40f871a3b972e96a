"""The process runtime's IAM fronts on real nodes: a node whose security has an IAM realm listens
on private ports, and its port (and each floating address it is given) is an IAM authenticator:
HAProxy with our Lua step where HAProxy is installed, the asyncio one otherwise. Tokens are
checked by the runtime's verifier (NodeRuntime.set_iam_verifier), made as AWS's guides make them."""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from controlplane.auth.iam_signer import iam_token
from controlplane.tls import LocalCa
from engine.proxy.haproxy import find_haproxy
from engine.proxy.iam_auth import iam_password, with_iam_password
from engine.runtime import frontends
from engine.runtime.base import NodeConfig
from engine.runtime.process import ProcessRuntime
from engine.security import AclUser
from tests.runtimes import BINARIES, ProcessKit
from tests.unit.engine.test_iam_auth import ACCOUNT, VERIFIER
from tests.unit.engine.test_security import ADMIN, DEFAULT, client, secure, started

pytestmark = pytest.mark.skipif(not BINARIES.get("redis"), reason="redis-server is not installed")

REALM = f"{ACCOUNT}/us-east-1/my-cache"


@pytest.fixture(params=["haproxy", "asyncio"])
def runtime(request: pytest.FixtureRequest, kit: ProcessKit,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[ProcessRuntime]:
    if request.param == "haproxy":
        if find_haproxy() is None:
            pytest.skip("haproxy is not installed")
    else:
        monkeypatch.setattr("engine.runtime.frontends.find_haproxy", lambda: None)
    rt = kit.runtime()
    rt.set_iam_verifier(VERIFIER.verify_realm)
    yield rt
    rt.close()  # its fronts let go of the addresses before the kit's cleaner adopts the nodes


def _node(kit: ProcessKit, rt: ProcessRuntime, ca: LocalCa, name: str) -> NodeConfig:
    app = with_iam_password(ADMIN, AclUser.parse("app-iam on ~app:* +get +set +ping +client +hello"))
    config = secure(kit, rt, name, DEFAULT, " ".join((app.name, *app.rules)), tls="required", ca=ca,
                    extra_names=("127.0.0.1",))
    assert config.security is not None
    return started(rt, dataclasses.replace(config, security=dataclasses.replace(config.security, iam_realm=REALM)))


def test_the_front_lets_tokens_in_and_keeps_the_rest_out(kit: ProcessKit, runtime: ProcessRuntime,
                                                         tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    node = _node(kit, runtime, ca, "f1")
    # HAProxy's configurations under the runtime's directory: there with HAProxy, not without.
    haproxies = list((kit.data / "_fronts" / "haproxy").glob("*.cfg"))
    assert len(haproxies) == (1 if frontends.find_haproxy() is not None else 0)
    # HAProxy reaches the node over its owner-only unix socket, not a second TCP hop.
    sock = kit.data / node.name / "front.sock"
    assert sock.is_socket() and sock.stat().st_mode & 0o777 == 0o700
    for cfg in haproxies:
        assert f"server node unix@{sock}" in cfg.read_text()
    token = iam_token("my-cache", "app-iam")
    app = client(node, ca=ca, username="app-iam", password=token)
    assert app.set("app:1", "a") and app.get("app:1") == b"a"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other:1")  # the node's ACL for the user holds
    assert client(node, ca=ca, username="app-iam", password=token, protocol=3).get("app:1") == b"a"  # HELLO AUTH
    refused = (iam_token("my-cache", "app-iam", now=time.time() - 16 * 60),  # too old
               iam_token("my-cache", "app-iam", secret="forged"),
               iam_token("other-cache", "app-iam"),
               iam_password(ADMIN, "app-iam"))  # the internal password is the front's alone
    for password in refused:
        with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
            client(node, ca=ca, username="app-iam", password=password).ping()
    with pytest.raises(redis.AuthenticationError):
        client(node, ca=ca).get("app:1")  # no login
    assert client(node, ca=ca, password="tok-Old-0001").get("app:1") == b"a"  # a password user
    with pytest.raises(redis.ConnectionError):
        client(node).ping()  # TLS only
    # A floating address gets a front of its own, and loses it again.
    runtime.set_addresses(node.name, ["127.0.0.1"])
    floating = dataclasses.replace(node, host="127.0.0.1")
    assert client(floating, ca=ca, username="app-iam", password=token).get("app:1") == b"a"
    runtime.set_addresses(node.name, [])
    with pytest.raises(redis.ConnectionError):
        client(floating, ca=ca, username="app-iam", password=token).ping()
    # A restarted node comes back behind its front.
    runtime.stop(node.name)
    started(runtime, node)
    assert client(node, ca=ca, username="app-iam", password=iam_token("my-cache", "app-iam")).get("app:1") in (
        b"a", None)


def test_haproxy_ends_token_sessions_after_12_hours_on_the_engines_clock(kit: ProcessKit, runtime: ProcessRuntime,
                                                                         tmp_path: Path) -> None:
    if frontends.find_haproxy() is None:
        pytest.skip("the asyncio front's limit is tested in test_iam_auth.py")
    ca = LocalCa(tmp_path / "ca")
    node = _node(kit, runtime, ca, "f2")
    fronts = runtime._frontends
    now = [1000.0]
    fronts.clock = lambda: now[0]
    app = client(node, ca=ca, username="app-iam", password=iam_token("my-cache", "app-iam"))
    password_user = client(node, ca=ca, password="tok-Old-0001")
    app_id, password_id = app.client_id(), password_user.client_id()
    assert fronts.sweep_iam_sessions() == []
    now[0] += 12 * 3600 - 5
    assert fronts.sweep_iam_sessions() == [] and app.client_id() == app_id
    now[0] += 10
    assert len(fronts.sweep_iam_sessions()) == 1  # the token's session, not the password user's
    # Its connection was ended: redis-py's pool connects again (a new connection, the token still
    # valid in real time); the password user's connection is the same.
    assert app.client_id() != app_id
    assert password_user.client_id() == password_id
    assert fronts.sweep_iam_sessions() == []  # the new login starts its own 12 hours


def _resp(*args: str) -> bytes:
    return f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)


def test_commands_before_a_token_login_get_the_nodes_own_answers(kit: ProcessKit, runtime: ProcessRuntime,
                                                                   tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    node = _node(kit, runtime, ca, "f3")
    context = ssl.create_default_context(cafile=str(ca.ca_path))
    with socket.create_connection((node.host, node.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=node.host) as conn:
        reader = conn.makefile("rb")
        for command in (("PING",), ("HELLO", "3"), ("CLIENT", "SETNAME", "app")):
            conn.sendall(_resp(*command))
            assert reader.readline().startswith(b"-NOAUTH"), command  # as the node answers
        conn.sendall(_resp("CLIENT", "SETINFO", "LIB-NAME", "redis-py"))
        assert reader.readline().startswith(b"-")  # NOAUTH; before Redis 7.2 an unknown subcommand
        # Pipelined: a command, the login, a command after it (the node's, in C).
        conn.sendall(_resp("PING") + _resp("AUTH", "app-iam", iam_token("my-cache", "app-iam")) + _resp("PING"))
        assert [reader.readline() for _ in range(3)] == [b"-NOAUTH Authentication required.\r\n", b"+OK\r\n",
                                                         b"+PONG\r\n"]
        conn.sendall(_resp("SET", "app:2", "b") + _resp("CLIENT", "GETNAME"))
        assert reader.readline() == b"+OK\r\n"
        assert reader.readline() == b"$-1\r\n"  # the SETNAME before the login changed nothing
