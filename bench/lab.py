"""The servers a benchmark runs against, started on demand and always stopped.

`Lab` starts elasticache-local (real nodes, a temp data directory, a loopback network of its
own) and moto_server on free ports of 127.0.0.1, each in its own session so a Ctrl-C reaches
only the runner, which then resets and stops them in order. Everything has a deadline.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_NETWORK = "127.0.130.0/24"
ENDPOINT_NETWORK = "127.0.131.0/24"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
RESET_TIMEOUT = 120.0

# What boto3 sends, minus a real signature (neither server checks it by default); moto needs
# the credential scope to know the service.
AUTHORIZATION = ("AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/elasticache/aws4_request, "
                 "SignedHeaders=host, Signature=x")
FORM_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
    "Authorization": AUTHORIZATION,
    "X-Amz-Date": "20260101T000000Z",
}
_STATUS = re.compile(rb"<CacheClusterStatus>([^<]*)</CacheClusterStatus>")


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, all CPUs summed."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - idle) / tick, sum(values[:8]) / tick


class CpuWatch:
    """How busy the machine was while measuring, and how much of that was someone else: on a
    small machine shared with other work, that explains a noisy number."""

    def __init__(self, *pids: int) -> None:
        self._pids = pids
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        machine = machine_cpu()
        ours = [proc_cpu(p) for p in self._pids]
        if machine is None or any(c is None for c in ours):
            return None
        me = os.times()
        return machine[0], machine[1], sum(c for c in ours if c is not None) + me.user + me.system

    def summary(self) -> str:
        end = self._sample()
        if self._start is None or end is None or end[1] <= self._start[1]:
            return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        busy, total, mine = (e - s for e, s in zip(end, self._start, strict=True))
        others = max(0.0, busy - mine)
        return (f"machine CPU busy {busy / total:.0%} during the measurement ({os.cpu_count()} CPUs): "
                f"servers + runner {mine / total:.0%}, everything else (cache nodes included) {others / total:.0%}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _CountingConnection(http.client.HTTPConnection):
    connects = 0

    def connect(self) -> None:
        self.connects += 1
        super().connect()


class RawClient:
    """Form POSTs over one keep-alive connection (reopened only if the server closes it)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self._conn = _CountingConnection("127.0.0.1", port, timeout=timeout)

    @property
    def connects(self) -> int:
        return self._conn.connects

    def post(self, body: bytes) -> tuple[int, bytes]:
        try:
            self._conn.request("POST", "/", body=body, headers=FORM_HEADERS)
            resp = self._conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # A keep-alive connection the server dropped between calls: once more, fresh.
            self._conn.close()
            self._conn.request("POST", "/", body=body, headers=FORM_HEADERS)
            resp = self._conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._conn.close()
        return resp.status, data

    def cluster_status(self, cluster_id: str) -> str | None:
        """The cluster's CacheClusterStatus, or None once it is gone (CacheClusterNotFound)."""
        status, data = self.post(
            f"Action=DescribeCacheClusters&Version=2015-02-02&CacheClusterId={cluster_id}".encode())
        if status == 404 or b"CacheClusterNotFound" in data:
            return None
        if status != 200:
            raise RuntimeError(f"DescribeCacheClusters {cluster_id}: HTTP {status}: {data[:300]!r}")
        m = _STATUS.search(data)
        return m.group(1).decode() if m else "?"

    def statuses(self) -> list[str]:
        status, data = self.post(b"Action=DescribeCacheClusters&Version=2015-02-02&MaxRecords=100")
        if status != 200:
            raise RuntimeError(f"DescribeCacheClusters: HTTP {status}: {data[:300]!r}")
        return [m.decode() for m in _STATUS.findall(data)]

    def close(self) -> None:
        self._conn.close()


def wait_until(what: str, done: Callable[[], bool], timeout: float, interval: float) -> float:
    """Call `done` every `interval` seconds (measured start to start) until it is true; the
    seconds it took. TimeoutError after `timeout`."""
    start = time.perf_counter()
    deadline = start + timeout
    next_at = start
    while True:
        if done():
            return time.perf_counter() - start
        now = time.perf_counter()
        if now > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        next_at = max(next_at + interval, now)
        time.sleep(max(0.0, next_at - now))


def _wait_http(url: str, proc: subprocess.Popen[bytes], method: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            req = urllib.request.Request(url, method=method)
            urllib.request.urlopen(req, timeout=2).read()
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f} s:\n{tail}")


def _stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)


class Server:
    name = "?"

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        self._log_path = self.dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _popen(self, argv: list[str], env: dict[str, str]) -> None:
        with open(self._log_path, "ab") as log_file:
            self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "elasticache", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60),
        )

    def raw(self) -> RawClient:
        return RawClient(self.port)

    def reset(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _post(self, path: str, timeout: float) -> None:
        req = urllib.request.Request(self.url + path, method="POST")
        urllib.request.urlopen(req, timeout=timeout).read()


class Ours(Server):
    name = "elasticache-local"
    # Each benchmark's service on networks of its own, so two never meet on an address.
    networks = (NODE_NETWORK, ENDPOINT_NETWORK)
    log_level = "warning"

    def settings(self) -> dict[str, str]:
        """Settings beyond the common ones (subclasses: runtime, health probing, ...)."""
        return {}

    def start(self) -> None:
        self.port = free_port()
        env = dict(os.environ)
        env.update({
            "ELASTICACHE_LOCAL_PORT": str(self.port),
            "ELASTICACHE_LOCAL_DATA_DIR": str(self.dir / "data"),
            "ELASTICACHE_LOCAL_NODE_NETWORK": self.networks[0],
            "ELASTICACHE_LOCAL_ENDPOINT_NETWORK": self.networks[1],
            "ELASTICACHE_LOCAL_ADDRESSING": "loopback",
            "ELASTICACHE_LOCAL_LOG_LEVEL": self.log_level,
            **self.settings(),
        })
        self._popen([sys.executable, "-m", "controlplane", "serve"], env)
        assert self.proc is not None
        _wait_http(self.url + "/api/v1/health", self.proc, "GET", self._log_path)

    def reset(self) -> None:
        self._post("/api/v1/reset", RESET_TIMEOUT)

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.reset()
                except (OSError, urllib.error.URLError) as exc:
                    log(f"{self.name}: reset before stopping failed ({exc}); removing nodes directly")
                _stop_process(self.proc, signal.SIGINT)
        finally:
            self.proc = None
            nodes = self.dir / "data" / "nodes"
            if nodes.is_dir():
                from engine.runtime.process import ProcessRuntime

                runtime = ProcessRuntime(nodes, {})
                try:
                    for node in runtime.list_managed():
                        runtime.remove(node.name)
                finally:
                    runtime.close()
            shutil.rmtree(self.dir, ignore_errors=True)


class Moto(Server):
    name = "moto"

    def start(self) -> None:
        self.port = free_port()
        script = Path(sys.executable).with_name("moto_server")
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
        self._popen([*argv, "-H", "127.0.0.1", "-p", str(self.port)], dict(os.environ))
        assert self.proc is not None
        _wait_http(self.url + "/moto-api/reset", self.proc, "POST", self._log_path)

    def reset(self) -> None:
        self._post("/moto-api/reset", RESET_TIMEOUT)

    def stop(self) -> None:
        try:
            if self.proc is not None:
                _stop_process(self.proc, signal.SIGTERM)
        finally:
            self.proc = None
            shutil.rmtree(self.dir, ignore_errors=True)


class Lab:
    """Both servers, started on first use, stopped (nodes and temp dirs included) on exit."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self._ours: Ours | None = None
        self._moto: Moto | None = None

    @property
    def ours(self) -> Ours:
        if self._ours is None:
            log("starting elasticache-local")
            self._ours = Ours()  # kept before start(): a failed start is cleaned up too
            self._ours.start()
        return self._ours

    @property
    def moto(self) -> Moto:
        if self._moto is None:
            log("starting moto_server")
            self._moto = Moto()
            self._moto.start()
        return self._moto

    def reset(self) -> None:
        if self._ours is not None:
            self._ours.reset()
        if self._moto is not None:
            self._moto.reset()

    def close(self) -> None:
        """Stop both servers. Ctrl-C and SIGTERM meanwhile are ignored (every step has a deadline),
        so an impatient user does not leave 50 nodes behind."""
        servers = [s for s in (self._ours, self._moto) if s is not None]
        if not servers:
            return
        log("stopping " + " and ".join(s.name for s in servers))
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        errors: list[BaseException] = []
        try:
            for server in servers:
                try:
                    server.stop()
                except BaseException as exc:  # stop the other one all the same
                    errors.append(exc)
        finally:
            self._ours = self._moto = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if errors:
            raise errors[0]

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_node(runtime: Any, config: Any, timeout: float = 10.0) -> None:
    """Start a node on a NodeRuntime and wait until a probe says it serves."""
    runtime.start(config)
    deadline = time.monotonic() + timeout
    while not runtime.probe(config.name, 0.5).ok:
        if time.monotonic() > deadline:
            raise RuntimeError(f"node {config.name} did not start")
        time.sleep(0.005)
