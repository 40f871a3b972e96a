"""The IAM authenticator as HAProxy: the data path in C.

The asyncio authenticator (iam_auth.py) relays every byte through Python, which on a small
machine costs a third or more of a node's throughput (bench/iam.py). Here HAProxy terminates the
client's TLS with the node's certificate, a Lua action of ours (iam_login.lua) reads the first
command and, for a login, asks `IamVerifierSocket` (a unix socket, owner-only, served by a
thread of this process) whether the token opens the front's node as that user; the answer puts
the user's internal password in place of the token, and from then on HAProxy relays in C to the
node's private plain-text port. A process per address the node is reached on (HaproxyForwarders
with a FrontConfig: its address is fixed, re-pointing is not needed: the node's private port
lives as long as the node).

The protocol on the socket: one line `<front id> <user> <token>`, one line back: `+<password>`
(verified: log in with it), `!` (the client sent an internal password itself: refuse), `-`
(anything else: the node answers the login as it is).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from engine.files import write_private
from engine.proxy.haproxy import FrontConfig
from engine.proxy.iam_auth import Verify
from engine.proxy.iam_sessions import IAM_BACKEND

__all__ = ["LUA_SCRIPT", "IamVerifierSocket", "VerifyLogin", "iam_front_config"]

log = logging.getLogger(__name__)

LUA_SCRIPT = "iam_login.lua"
MAX_LINE = 32 * 1024
INSPECT_DELAY = "5s"  # how long HAProxy holds a connection's first command for the Lua step


@dataclass(frozen=True)
class VerifyLogin:
    """One front's checks: a token for a user, and the user's internal password."""

    verify: Verify
    password_of: Callable[[str], str]


class IamVerifierSocket:
    """A unix socket answering the Lua step of every HAProxy IAM front of this process. Thread
    safe; the thread starts with the first front."""

    def __init__(self) -> None:
        # Unix socket paths are limited to about 100 bytes: a short directory of its own.
        self._directory: Path | None = None
        self._lock = threading.Lock()
        self._fronts: dict[str, VerifyLogin] = {}
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        if self._directory is None:
            raise RuntimeError("the IAM verifier socket is not started (register a front first)")
        return self._directory / "verifier.sock"

    def register(self, checks: VerifyLogin) -> str:
        """A new front's id (what its Lua step names it by); starts the socket if needed."""
        front = secrets.token_hex(8)
        with self._lock:
            self._start()
            self._fronts[front] = checks
        return front

    def unregister(self, front: str) -> None:
        with self._lock:
            self._fronts.pop(front, None)

    def answer(self, line: str) -> str:
        """The answer to one request line (see the module's protocol)."""
        front, _, rest = line.partition(" ")
        user, _, token = rest.partition(" ")
        with self._lock:
            checks = self._fronts.get(front)
        if checks is None or not user or not token:
            return "-"
        password = checks.password_of(user)
        if hmac.compare_digest(token.encode(), password.encode()):
            return "!"  # the internal password is the front's alone: never from a client
        try:
            ok = checks.verify(user, token)
        except Exception:
            log.exception("IAM front: verifying a token failed")
            ok = False
        return "+" + password if ok else "-"

    def close(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
            self._fronts.clear()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)
        directory, self._directory = self._directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def _start(self) -> None:
        if self._server is not None:
            return
        self._directory = Path(tempfile.mkdtemp(prefix="ecl-iam-"))  # 0700
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.connection.settimeout(10.0)
                with contextlib.suppress(OSError):
                    line = self.rfile.readline(MAX_LINE).decode(errors="replace").strip()
                    self.wfile.write(owner.answer(line).encode() + b"\n")

        class Server(socketserver.ThreadingUnixStreamServer):
            # Clients connect all at once (a pool, a benchmark's 50): socketserver's default
            # backlog of 5 refused HAProxy's connections (its Lua step then lets no token in).
            request_queue_size = 512

        server = Server(str(self.path), Handler, bind_and_activate=False)
        server.daemon_threads = True
        old = os.umask(0o177)  # owner-only from the bind on: the answers carry passwords
        try:
            server.server_bind()
        finally:
            os.umask(old)
        server.server_activate()
        thread = threading.Thread(target=server.serve_forever, name="iam-verifier", daemon=True)
        thread.start()
        self._server, self._thread = server, thread


def iam_front_config(workdir: Path, name: str, cert_file: str, key_file: str, verifier: Path,
                     front: str, *, node: tuple[str, int] | None = None, node_socket: str | None = None) -> FrontConfig:
    """A HAProxy IAM front's configuration: the node's certificate and key as one PEM (HAProxy
    reads them so, written owner-only), the Lua step with the verifier's socket and the front's id;
    `node`: the node's private plain port, `node_socket`: its unix socket, preferred (the Lua step
    asks the node there what it answers a client that has not logged in)."""
    lua_node = f"unix@{node_socket}" if node_socket else f"{node[0]}:{node[1]}" if node is not None else "-"
    pem = workdir / f"{name}.pem"
    write_private(pem, Path(cert_file).read_text() + "\n" + Path(key_file).read_text())
    script = resources.files("engine.proxy").joinpath(LUA_SCRIPT)
    return FrontConfig(
        bind_options=f"ssl crt {pem} ssl-min-ver TLSv1.2",
        # The Lua step waits for the verifier: longer than HAProxy's default 4 s under a burst.
        global_lines=(f"lua-load {script}", "tune.ssl.default-dh-param 2048", "tune.lua.session-timeout 10s"),
        frontend_lines=(f"tcp-request inspect-delay {INSPECT_DELAY}",
                        f"tcp-request content lua.iam_login {verifier} {front} {lua_node}",
                        # A token's session: its own backend, which `show sess` names (iam_sessions.py).
                        f"use_backend {IAM_BACKEND} if {{ var(sess.iam) -m bool }}"),
        server_socket=node_socket, backends=(IAM_BACKEND,))

