"""`elasticache-local serve`: bind the API's port before anything else is built or started, say
in one line what holds it when it is taken, print the banner only once the API answers, and say
on the way out what stopped and which cache nodes keep running."""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import sys
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.settings import Settings

if TYPE_CHECKING:
    from controlplane.service import Service

PORT_IN_USE = 1  # the exit status when the port cannot be bound
REMOTE_REFUSED = 2  # the exit status when the address is not a loopback one and allow_remote is off


class PortTaken(Exception):
    """The API's address cannot be bound; the message is the one line to print."""


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is a loopback one (127.0.0.0/8, ::1). A name that
    does not resolve counts as loopback here: binding it fails anyway, with its own message.
    An empty host is every address."""
    if not host.strip("[]"):
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return True
    return all(ipaddress.ip_address(str(a[4][0]).split("%")[0]).is_loopback for a in found)


def remote_refusal(host: str) -> str:
    return (f"elasticache-local: refusing to listen on {host}: other machines could reach the API, which by default "
            "checks no credentials; listen on 127.0.0.1, or pass --allow-remote (ELASTICACHE_LOCAL_ALLOW_REMOTE=true) "
            "to allow it (with --profile strict to check signatures)")


def bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound (uvicorn listens on it once the app has started)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    # As uvicorn does: a restart right after a stop must not wait for TIME_WAIT connections.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise PortTaken(_bind_failure(host, port, exc)) from exc
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    fix = "start it on another port with --port N (or ELASTICACHE_LOCAL_PORT=N)"
    if exc.errno == errno.EADDRINUSE:
        holder = holder_of(host, port)
        if holder.startswith("another elasticache-local"):
            return (f"elasticache-local: {host}:{port} is taken by {holder}, already serving "
                    f"http://{host}:{port}; use that one, or {fix}")
        return f"elasticache-local: {host}:{port} is already in use{' by ' + holder if holder else ''}; {fix}"
    if exc.errno == errno.EACCES:
        return f"elasticache-local: no permission to listen on {host}:{port}; {fix}"
    return f"elasticache-local: cannot listen on {host}:{port} ({exc.strerror or exc}); check --host, or {fix}"


def holder_of(host: str, port: int) -> str:
    """What listens on `port`, as far as can be known: another elasticache-local (its health
    answers), a process found through /proc (Linux), or "" when nothing can be told."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    probe_host = f"[{probe_host}]" if ":" in probe_host and not probe_host.startswith("[") else probe_host
    try:
        with urllib.request.urlopen(f"http://{probe_host}:{port}/api/v1/health", timeout=1) as resp:
            health = json.loads(resp.read())
        if isinstance(health, dict) and health.get("status") == "ok" and "runtime" in health:
            return (f"another elasticache-local ({health['runtime']} runtime, "
                    f"{health.get('cache_clusters', 0)} cache cluster(s))")
    except (OSError, ValueError):
        pass
    pids = listening_pids(port)
    if not pids:
        return ""
    return ", ".join(f"process {pid} ({_command_of(pid)})" for pid in pids[:3])


def listening_pids(port: int, proc: Path = Path("/proc")) -> list[int]:
    """The processes with a socket listening on TCP `port` (Linux: /proc/net/tcp{,6} name the
    socket's inode, /proc/<pid>/fd links name the inodes a process holds). Empty elsewhere, or
    for processes this user may not look into."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEXIP:HEXPORT; state 0A is LISTEN
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to look at
    return sorted(found)


def _command_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    command = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv if a)
    return (command[:77] + "...") if len(command) > 80 else command or "?"


def banner(service: Service, url: str) -> str:
    engines = ", ".join(f"{e} {'/'.join(v)}" for e, v in service.available_versions().items() if v) or "none"
    return (
        f"elasticache-local: the ElastiCache API is at {url}\n"
        f"  runtime {service.runtime.name}, node addresses: {service.addressing}, "
        f"L4 proxy: {service.l4_proxy}, engines: {engines}\n"
        f"  data: {service.settings.data_dir}\n"
        f"  try:  aws elasticache create-cache-cluster --endpoint-url {url} --cache-cluster-id web "
        "--engine redis --cache-node-type cache.t3.micro --num-cache-nodes 1\n"
        f"  or:   export AWS_ENDPOINT_URL={url}   (boto3 and the aws cli pick it up)\n"
        "  Ctrl-C stops the API; cache nodes keep running and are re-adopted on the next start."
    )


def farewell(service: Service, url: str) -> str:
    left = service.nodes_left
    if left is None:
        nodes = "cache nodes keep running (how many could not be told)"
    elif left == 0:
        return f"elasticache-local: stopped the API at {url} and the control loop; no cache node was running"
    else:
        nodes = f"{left} cache node(s) keep running"
    return (f"elasticache-local: stopped the API at {url} and the control loop; {nodes}, and the next "
            f"`elasticache-local serve` with data {service.settings.data_dir} re-adopts them "
            "(`elasticache-local reset` while it runs stops them)")


def serve(settings: Settings) -> int:
    import uvicorn

    from controlplane.app import create_app

    if not settings.allow_remote and not is_loopback(settings.host):
        print(remote_refusal(settings.host), file=sys.stderr, flush=True)
        return REMOTE_REFUSED
    if not is_loopback(settings.host) and not settings.verify_signatures:
        print(f"elasticache-local: warning: listening on {settings.host} (--allow-remote) and checking no "
              "signatures: anyone who can reach it can create, change and delete caches", file=sys.stderr, flush=True)
    try:
        sock = bind(settings.host, settings.port)  # before anything is built: nothing half-started
    except PortTaken as exc:
        print(exc, file=sys.stderr, flush=True)
        return PORT_IN_USE
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{host}:{settings.port}"
    try:
        app = create_app(settings)
        service: Service = app.state.service

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                if self.started and not self.should_exit:  # listening, the control loop running
                    print(banner(service, url), flush=True)

            async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
                await super().shutdown(sockets)  # the lifespan's end stops the service
                print(farewell(service, url), flush=True)

        # Open live-feed streams never end on their own: without a bound, Ctrl-C would wait for
        # every dashboard tab to close.
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3)
        try:
            Server(config).run(sockets=[sock])
        except KeyboardInterrupt:
            return 130  # Ctrl-C, already reported on the way out
    finally:
        sock.close()
    return 0
