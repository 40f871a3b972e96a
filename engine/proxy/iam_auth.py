"""The authenticator in front of a node of an IAM-enabled cache.

A node cannot check an IAM token (a SigV4-presigned URL, valid 15 minutes): this front does.
It passes a client's commands to the node one at a time, reading each reply, until one logs
in: `AUTH <user> <token>` or `HELLO <ver> AUTH <user> <token> [SETNAME <name>]` whose token
`verify(user, token)` accepts (the control plane's verifier, run off the loop: it reads the
store) goes to the node with the token replaced by the user's internal password
(`iam_password`: the service sets it on the node, so the node's ACL rules for the user still
hold). Anything else goes as it is, and the node answers: NOAUTH before a login, WRONGPASS for a
token that did not verify (no IAM user has a password a client knows), OK for a password user's
AUTH; a node whose default user needs no password serves the client at once. From the first
command the node accepts on, the front only copies bytes both ways (engine.proxy.relay).

AWS ends IAM-authenticated connections after 12 hours: so does this front (`max_age`, on an
injectable clock). Not done: extending a connection with a fresh token (AWS allows an AUTH
with a new token within the 12 hours); after the login the front reads no commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.proxy.relay import relay
from engine.proxy.resp import ProtocolError, encode_command, parse_command, reply_end
from engine.proxy.tcp import BUFFER_SIZE, CONNECT_TIMEOUT, Listener, set_nodelay
from engine.security import AclUser, Credentials

__all__ = ["MAX_CONNECTION_AGE", "IamAuthenticator", "IamBackend", "Verify", "iam_password", "with_iam_password"]

log = logging.getLogger(__name__)

# verify(user, token) -> whether the token opens the cache as that user. Blocking allowed.
Verify = Callable[[str, str], bool]

MAX_CONNECTION_AGE = 12 * 3600.0  # AWS: IAM-authenticated connections are dropped after 12 hours
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
# What the front reads of an unauthenticated command (a token is about 600 bytes); a bigger one
# is the node's to judge: the front hands the connection over as it is.
MAX_ARGS = 10
MAX_BULK = 16 * 1024
HANDSHAKE_TIMEOUT = 5.0  # for the node's answer to the AUTH


def iam_password(admin: Credentials, user: str) -> str:
    """The password IAM user `user` has on nodes whose service user is `admin`: derived from the
    admin's password, so the service (which renders the node's ACL) and this front (which logs
    in with it) agree without storing it, and no customer can know it."""
    return hmac.new(admin.password.encode(), b"iam-user:" + user.encode(), hashlib.sha256).hexdigest()


def with_iam_password(admin: Credentials, user: AclUser) -> AclUser:
    """The ACL user an IAM user is on a node: its rules (no password of its own: no static
    password opens it) and its internal password, which only this front logs in with."""
    return AclUser(user.name, (*user.rules, ">" + iam_password(admin, user.name)))


@dataclass(frozen=True)
class IamBackend:
    """The node behind the front: its address, and a client TLS context when that port speaks
    TLS (`server_hostname`: the name to check its certificate for; default the host)."""

    host: str
    port: int
    tls: ssl.SSLContext | None = field(default=None, compare=False)
    server_hostname: str | None = None


_Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class IamAuthenticator(Listener):
    """Listens on host:port (TLS when `server_tls`) in front of `backend`."""

    kind = "iam authenticator"

    def __init__(self, host: str, port: int, backend: IamBackend, verify: Verify, password_of: Callable[[str], str], *,
                 server_tls: ssl.SSLContext | None = None, max_age: float = MAX_CONNECTION_AGE,
                 clock: Callable[[], float] = time.monotonic, check_every: float = 60.0) -> None:
        super().__init__(host, port)
        self.ssl_context = server_tls
        self.backend = backend
        self.verify = verify
        self.password_of = password_of
        self.max_age = max_age
        self.clock = clock
        self.check_every = check_every  # how often a connection's age is looked at (the clock may jump)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = bytearray()
        node: _Stream | None = None  # the node's connection, still unauthenticated
        try:
            while True:
                try:
                    parsed = parse_command(buf, max_args=MAX_ARGS, max_bulk=MAX_BULK)
                except ProtocolError:
                    # Not for this front to judge: the node applies its own rules (and limits)
                    # to an unauthenticated client.
                    node = node or await self._connect()
                    if node is not None:
                        handed, node = node, None
                        await self._serve(reader, writer, handed, bytes(buf), None)
                    return
                if parsed is None:
                    data = await reader.read(BUFFER_SIZE)
                    if not data:
                        return
                    buf += data
                    continue
                args, used = parsed
                del buf[:used]
                if not args:
                    continue
                command, iam = await self._for_node(args)
                if command is None:
                    writer.write(WRONGPASS)
                    continue
                node = node or await self._connect()
                if node is None:
                    return
                reply = await _exchange(node, command, HANDSHAKE_TIMEOUT if iam else None)
                if iam and reply.startswith(b"-"):
                    log.info("%s %s:%d: a token verified but the node refused its user: %s", self.kind,
                             self.host, self.port, reply.decode(errors="replace").strip())
                    reply = WRONGPASS
                writer.write(reply)
                await writer.drain()
                if reply.startswith(b"-"):
                    continue  # still unauthenticated: the next command may log in
                if args[0].upper() == b"QUIT":
                    return
                # Logged in (or the node's default user needs no login): the rest is the node's,
                # what was pipelined behind this command first.
                handed, node = node, None
                await self._serve(reader, writer, handed, bytes(buf), self.max_age if iam else None)
                return
        finally:
            if node is not None:
                node[1].close()

    async def _for_node(self, args: list[bytes]) -> tuple[bytes | None, bool]:
        """What to send the node for a client's command, and whether it is an IAM login: a
        verified token is replaced by the user's internal password; anything else goes as it is
        (a password user's AUTH, a command the node's default user may run, a token that did not
        verify: the node refuses it, WRONGPASS). None: refuse it here (WRONGPASS)."""
        login = _login(args)
        if login is not None:
            user, token, slot = login
            password = self.password_of(user)
            if hmac.compare_digest(token.encode(), password.encode()):
                return None, False  # the internal password is the front's alone: never from a client
            if await self._verified(user, token):
                node_args = list(args)
                node_args[slot] = password.encode()
                return encode_command(node_args), True
        return encode_command(args), False

    async def _verified(self, user: str, token: str) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.verify, user, token)
        except Exception:
            log.exception("%s %s:%d: verifying a token failed", self.kind, self.host, self.port)
            return False

    async def _connect(self) -> _Stream | None:
        b = self.backend
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
                b.host, b.port, limit=BUFFER_SIZE, ssl=b.tls,
                server_hostname=(b.server_hostname or b.host) if b.tls else None), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info("%s %s:%d: cannot reach the node %s:%d: %s", self.kind, self.host, self.port, b.host, b.port, exc)
            return None
        set_nodelay(up_writer)
        return up_reader, up_writer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, node: _Stream,
                     pipelined: bytes, max_age: float | None) -> None:
        """Copy bytes both ways until either side ends or the connection is `max_age` old."""
        deadline = None if max_age is None else self.clock() + max_age
        task = asyncio.create_task(relay(reader, writer, *node, to_upstream=pipelined))
        try:
            while not task.done():
                if deadline is None:
                    await asyncio.wait({task})
                    break
                remaining = deadline - self.clock()
                if remaining <= 0:
                    log.info("%s %s:%d: closing an IAM connection after %.0f s", self.kind, self.host, self.port,
                             max_age)
                    break
                await asyncio.wait({task}, timeout=min(remaining, self.check_every))
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _login(args: list[bytes]) -> tuple[str, str, int] | None:
    """(user, token, where the token is in args) of an AUTH or HELLO ... AUTH; None for any
    other command (and a malformed one: the node answers it)."""
    name = args[0].upper()
    if name == b"AUTH":
        if len(args) == 2:
            return "default", args[1].decode(errors="replace"), 1
        if len(args) == 3:
            return args[1].decode(errors="replace"), args[2].decode(errors="replace"), 2
        return None
    if name == b"HELLO":
        i = 2  # HELLO <protover> [AUTH <user> <pass>] [SETNAME <name>], options in any order
        while i < len(args):
            option = args[i].upper()
            if option == b"AUTH":
                if i + 2 >= len(args):
                    return None
                return args[i + 1].decode(errors="replace"), args[i + 2].decode(errors="replace"), i + 2
            i += 2 if option == b"SETNAME" else 1
    return None


async def _exchange(node: _Stream, command: bytes, timeout: float | None) -> bytes:
    """Send `command` to the node and read until its reply is whole (nothing else is in flight;
    what may follow it, a SUBSCRIBE's further replies, comes along: it is the client's too)."""
    up_reader, up_writer = node
    up_writer.write(command)
    buf = bytearray()

    async def whole() -> bytes:
        while reply_end(buf) is None:
            data = await up_reader.read(BUFFER_SIZE)
            if not data:
                raise ConnectionError("the node closed the connection")
            buf.extend(data)
        return bytes(buf)

    return await asyncio.wait_for(whole(), timeout)
