"""The authenticator in front of a node of an IAM-enabled cache.

A node cannot check an IAM token (a SigV4-presigned URL, valid 15 minutes): this front does.
It reads a client's commands until one authenticates: `AUTH <user> <token>` or `HELLO <ver>
AUTH <user> <token> [SETNAME <name>]`. It asks `verify(user, token)` (the control plane's
verifier, run off the loop: it reads the store); on yes it opens a connection to the node, logs
in there as that same user with the user's internal password (`iam_password`: the service sets
it on the node, so the node's ACL rules for the user still hold), passes on the node's answer
to the AUTH or HELLO, and from then on only copies bytes both ways (engine.proxy.relay).
On no it answers WRONGPASS, as redis does; any other command before that answers NOAUTH.

AWS ends IAM-authenticated connections after 12 hours: so does this front (`max_age`, on an
injectable clock). Not done: extending a connection with a fresh token (AWS allows an AUTH
with a new token within the 12 hours); after the handshake the front reads no commands.
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
NOAUTH = b"-NOAUTH Authentication required.\r\n"
HELLO_NOAUTH = (b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
                b"<proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP "
                b"protocol version at the same time\r\n")
# What an unauthenticated client may send (as redis limits it): a token is about 600 bytes.
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


class _Refused(Exception):
    """The node did not accept the login (the user is not on it, or not with that password)."""


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
        while True:
            try:
                parsed = parse_command(buf, max_args=MAX_ARGS, max_bulk=MAX_BULK)
            except ProtocolError as exc:
                writer.write(b"-ERR %s\r\n" % str(exc).encode())
                await writer.drain()
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
            upstream = await self._command(args, writer)
            if upstream is None:
                if writer.is_closing():
                    return
                await writer.drain()
                continue
            # What was pipelined behind the AUTH is the node's now.
            await self._serve(reader, writer, *upstream, bytes(buf))
            return

    async def _command(self, args: list[bytes], writer: asyncio.StreamWriter
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Answer one command of an unauthenticated client; the node's connection once one logs in."""
        name = args[0].upper()
        if name == b"QUIT":
            writer.write(b"+OK\r\n")
            writer.close()
            return None
        login = _login(args)
        if login is None:
            writer.write(HELLO_NOAUTH if name == b"HELLO" else NOAUTH)
            return None
        if isinstance(login, bytes):
            writer.write(login)
            return None
        user, token, slot = login
        if not await self._verified(user, token):
            writer.write(WRONGPASS)
            return None
        node_args = list(args)
        node_args[slot] = self.password_of(user).encode()
        try:
            up_reader, up_writer, answer = await self._login_to_node(encode_command(node_args))
        except (OSError, TimeoutError, ProtocolError, _Refused, asyncio.IncompleteReadError) as exc:
            log.info("%s %s:%d: %r authenticated but the node refused or failed: %s", self.kind, self.host,
                     self.port, user, exc)
            writer.write(WRONGPASS)
            return None
        writer.write(answer)
        return up_reader, up_writer

    async def _verified(self, user: str, token: str) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self.verify, user, token)
        except Exception:
            log.exception("%s %s:%d: verifying a token failed", self.kind, self.host, self.port)
            return False

    async def _login_to_node(self, command: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        b = self.backend
        up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(
            b.host, b.port, limit=BUFFER_SIZE, ssl=b.tls,
            server_hostname=(b.server_hostname or b.host) if b.tls else None), CONNECT_TIMEOUT)
        try:
            set_nodelay(up_writer)
            up_writer.write(command)
            answer = await asyncio.wait_for(_one_reply(up_reader), HANDSHAKE_TIMEOUT)
            if answer.startswith(b"-"):
                raise _Refused(answer.decode(errors="replace").strip())
        except BaseException:
            up_writer.close()
            raise
        return up_reader, up_writer, answer

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, pipelined: bytes) -> None:
        """Copy bytes both ways until either side ends or the connection is `max_age` old."""
        deadline = self.clock() + self.max_age
        task = asyncio.create_task(relay(reader, writer, up_reader, up_writer, to_upstream=pipelined))
        try:
            while not task.done():
                remaining = deadline - self.clock()
                if remaining <= 0:
                    log.info("%s %s:%d: closing a connection after %.0f s", self.kind, self.host, self.port,
                             self.max_age)
                    break
                await asyncio.wait({task}, timeout=min(remaining, self.check_every))
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _login(args: list[bytes]) -> tuple[str, str, int] | bytes | None:
    """(user, token, where the token is in args) of an AUTH or HELLO ... AUTH; an error reply
    for a malformed one; None for any other command."""
    name = args[0].upper()
    if name == b"AUTH":
        if len(args) == 2:
            return "default", args[1].decode(errors="replace"), 1
        if len(args) == 3:
            return args[1].decode(errors="replace"), args[2].decode(errors="replace"), 2
        return b"-ERR wrong number of arguments for 'auth' command\r\n"
    if name == b"HELLO":
        i = 2  # HELLO <protover> [AUTH <user> <pass>] [SETNAME <name>], options in any order
        while i < len(args):
            option = args[i].upper()
            if option == b"AUTH":
                if i + 2 >= len(args):
                    return b"-ERR Syntax error in HELLO option 'auth'\r\n"
                return args[i + 1].decode(errors="replace"), args[i + 2].decode(errors="replace"), i + 2
            i += 2 if option == b"SETNAME" else 1
    return None


async def _one_reply(reader: asyncio.StreamReader) -> bytes:
    """One whole reply of the node (the answer to the login: nothing else was sent yet)."""
    buf = bytearray()
    while (end := reply_end(buf)) is None:
        data = await reader.read(BUFFER_SIZE)
        if not data:
            raise ConnectionError("the node closed the connection")
        buf += data
    if end != len(buf):
        raise ProtocolError("Protocol error: the node sent more than one reply")
    return bytes(buf)
