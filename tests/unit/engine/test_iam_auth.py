"""The IAM authenticator (engine/proxy/iam_auth.py) in front of a real redis-server with ACL
users, with the control plane's token verifier and tokens made as AWS's guides make them."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import uvloop
from redis.backoff import NoBackoff
from redis.retry import Retry

from controlplane.auth.iam_signer import iam_token
from controlplane.auth.iam_token import CacheTarget, IamTokenVerifier, iam_authenticator
from controlplane.auth.keys import AccessKey
from controlplane.state.users import User, UserSpec
from controlplane.tls import LocalCa
from engine.proxy import ProxyHub
from engine.proxy.iam_auth import IamBackend, iam_password, with_iam_password
from engine.runtime.base import NodeConfig
from engine.security import AclUser
from tests.eventually import eventually
from tests.requires import needs
from tests.runtimes import BINARIES, ProcessKit
from tests.unit.engine.test_security import ADMIN, DEFAULT, client, secure, started

pytestmark = needs(BINARIES.get("redis"), "redis-server is not installed")

ACCOUNT = "123456789012"
CACHE = CacheTarget("my-cache", ACCOUNT, "us-east-1")
IAM_USERS = ("app-iam", "ghost-iam")  # ghost-iam: an IAM user of the account that is not on the node


def _user(user_id: str) -> User:
    return User(account=ACCOUNT, region="us-east-1", id=user_id, created_at=datetime.now(UTC),
                spec=UserSpec(user_name=user_id, engine="redis", access_string="on ~app:* +get +set", rules=[],
                              minimum_engine_version="6.0", auth_type="iam"))


VERIFIER = IamTokenVerifier({"testing": AccessKey("testing", "testing", ACCOUNT, "testing")},
                            lambda account, region, uid: _user(uid) if uid in IAM_USERS else None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["asyncio", "uvloop"])
def hub(request: pytest.FixtureRequest) -> Iterator[ProxyHub]:
    """The hub on asyncio's loop, and on uvloop's (other transports: the relay swaps their protocols)."""
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop
    with ProxyHub(call_timeout=5, loop_factory=factory) as running:
        yield running


def iam_node(kit: ProcessKit, name: str, **kw: Any) -> NodeConfig:
    rt = kit.runtime()
    app = with_iam_password(ADMIN, AclUser.parse("app-iam on ~app:* +get +set +ping +client +hello"))
    return started(rt, secure(kit, rt, name, DEFAULT, " ".join((app.name, *app.rules)), **kw))


def front(hub: ProxyHub, node: NodeConfig, name: str = "iam", **kw: Any) -> tuple[str, int]:
    backend = kw.pop("backend", IamBackend(node.host, node.port))
    made = iam_authenticator(VERIFIER, CACHE, node.host, 0, backend, ADMIN, **kw)
    hub.add_iam_authenticator(name, node.host, 0, made)
    return hub.address(name)


def at(address: tuple[str, int], **kw: Any) -> redis.Redis:
    # No retries: redis-py retries a refused AUTH as a connection error.
    return redis.Redis(address[0], address[1], socket_timeout=5, retry=Retry(NoBackoff(), 0), **kw)


def test_a_token_logs_in_as_its_user_held_to_its_acl(kit: ProcessKit, hub: ProxyHub) -> None:
    node = iam_node(kit, "i1")
    address = front(hub, node)
    client(node, password="tok-Old-0001").set("other:1", "o")
    token = iam_token("my-cache", "app-iam")
    app = at(address, username="app-iam", password=token)
    assert app.ping()
    assert app.set("app:1", "a") and app.get("app:1") == b"a"
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("other:1")  # the node's ACL for the user still holds
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.delete("app:1")
    # AUTH <user> <token> (RESP2), HELLO 3 AUTH <user> <token> (RESP3): each replayed to the node
    # with the internal password.
    for protocol in (2, 3):
        assert at(address, username="app-iam", password=token, protocol=protocol).get("app:1") == b"a"
    # A second client after a good one still needs its own AUTH.
    with pytest.raises(redis.AuthenticationError, match=r"Authentication required|already authenticated"):
        at(address).get("app:1")
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        at(address, username="app-iam", password=iam_token("my-cache", "app-iam", secret="wrong")).ping()
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        at(address, username="app-iam", password=iam_token("other-cache", "app-iam")).ping()
    # A valid token of an IAM user that is not on the node: the node refuses the login.
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        at(address, username="ghost-iam", password=iam_token("my-cache", "ghost-iam")).ping()
    # The internal password is no token: it does not open the front.
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        at(address, username="app-iam", password=iam_password(ADMIN, "app-iam")).ping()
    # A password user (here the group's default user) logs in through the front as on the node.
    assert at(address, password="tok-Old-0001").get("other:1") == b"o"
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        at(address, password="tok-wrong").ping()
    # Nor is the token a password on the node itself.
    with pytest.raises(redis.AuthenticationError):
        client(node, username="app-iam", password=token).ping()


def test_pipelined_traffic_behind_the_auth(kit: ProcessKit, hub: ProxyHub) -> None:
    node = iam_node(kit, "i2")
    address = front(hub, node)
    token = iam_token("my-cache", "app-iam").encode()
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET app:x\r\n*3\r\n$4\r\nAUTH\r\n$7\r\napp-iam\r\n$%d\r\n%s\r\n" % (len(token), token)
                     + b"*3\r\n$3\r\nSET\r\n$5\r\napp:p\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$5\r\napp:p\r\n")
        want = b"-NOAUTH Authentication required.\r\n+OK\r\n+OK\r\n$1\r\nv\r\n"
        got = b""
        while len(got) < len(want):
            chunk = sock.recv(4096)
            assert chunk, got
            got += chunk
        assert got == want
    app = at(address, username="app-iam", password=token.decode())
    pipe = app.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"app:{i}", i)
        pipe.get(f"app:{i}")
    results = pipe.execute()
    assert results[1::2] == [str(i).encode() for i in range(2000)]


def test_a_half_close_is_passed_on_and_the_node_connection_ends_with_the_client(kit: ProcessKit,
                                                                                 hub: ProxyHub) -> None:
    node = iam_node(kit, "i5")
    address = front(hub, node)
    owner = client(node, password="tok-Old-0001")
    token = iam_token("my-cache", "app-iam").encode()
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"*3\r\n$4\r\nAUTH\r\n$7\r\napp-iam\r\n$%d\r\n%s\r\nGET app:h\r\n" % (len(token), token))
        sock.shutdown(socket.SHUT_WR)  # `printf ... | nc` style: the answers still come, then EOF
        got = b""
        while chunk := sock.recv(4096):
            got += chunk
        assert got == b"+OK\r\n$-1\r\n"

    def app_connections() -> list[dict[str, Any]]:
        return [c for c in owner.client_list() if c.get("user") == "app-iam"]

    app = at(address, username="app-iam", password=token.decode(), single_connection_client=True)
    assert app.ping() and len(app_connections()) == 1
    app.close()
    eventually(lambda: not app_connections(), 5, 0.02, "the node's connection closes with the client's")


def test_connections_end_after_12_hours(kit: ProcessKit, hub: ProxyHub) -> None:
    node = iam_node(kit, "i3")
    clock = Clock()
    address = front(hub, node, clock=clock, check_every=0.02)
    app = at(address, username="app-iam", password=iam_token("my-cache", "app-iam"), single_connection_client=True)
    assert app.ping()
    owner = at(address, password="tok-Old-0001", single_connection_client=True)  # a password user: no limit
    assert owner.ping()
    clock.now += 11.9 * 3600
    time.sleep(0.1)  # several checks of the clock pass: the connection stays
    assert app.ping()
    clock.now += 0.2 * 3600

    def dropped() -> bool:
        try:
            app.ping()
        except redis.ConnectionError:
            return True
        return False

    eventually(dropped, 5, 0.05, "the connection is closed after 12 hours")
    assert owner.ping()


def test_tls_on_both_sides(kit: ProcessKit, hub: ProxyHub, tmp_path: Path) -> None:
    ca = LocalCa(tmp_path / "ca")
    node = iam_node(kit, "i4", tls="required", ca=ca)
    cert, key = ca.issue([node.host])
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    address = front(hub, node, server_tls=server,
                    backend=IamBackend(node.host, node.port, ssl.create_default_context(cafile=str(ca.ca_path))))
    app = at(address, username="app-iam", password=iam_token("my-cache", "app-iam"), ssl=True,
             ssl_ca_certs=str(ca.ca_path))
    assert app.set("app:t", "1") and app.get("app:t") == b"1"
    with pytest.raises(redis.ConnectionError):
        at(address, username="app-iam", password=iam_token("my-cache", "app-iam")).ping()  # plain text


def test_a_node_whose_default_user_needs_no_password_serves_at_once(kit: ProcessKit, hub: ProxyHub) -> None:
    rt = kit.runtime()
    app = with_iam_password(ADMIN, AclUser.parse("app-iam on ~app:* +get +set"))
    node = started(rt, secure(kit, rt, "i6", "default on nopass ~* &* +@all", " ".join((app.name, *app.rules))))
    address = front(hub, node)
    with socket.create_connection(address, timeout=5) as sock:
        # 41 arguments as the first command: beyond what the front reads of an unauthenticated
        # client, so the node's to judge, and this node serves anyone.
        args = [b"MSET", *(b"k%d" % (i // 2) if i % 2 == 0 else b"%d" % (i // 2) for i in range(40))]
        sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
        assert sock.recv(100) == b"+OK\r\n"
    anyone = at(address, protocol=2)
    assert anyone.get("k7") == b"7"
    with pytest.raises(redis.exceptions.NoPermissionError):
        at(address, username="app-iam", password=iam_token("my-cache", "app-iam")).get("k7")
