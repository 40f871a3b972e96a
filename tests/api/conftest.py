"""A live elasticache-local (real uvicorn, real nodes) for boto3, the aws cli and redis-py.

Nodes get addresses from a test-only loopback network so a developer's own running service is
never touched; everything the server started is stopped at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from engine.runtime.process import ProcessRuntime

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/v1/health", timeout=1).read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + (self.data_dir / "server.log").read_text()[-3000:])

    def stop(self) -> None:
        """Like Ctrl-C: the API stops, nodes keep running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/api/v1/reset", method="POST")
        urllib.request.urlopen(req, timeout=60).read()

    def client(self, service: str = "elasticache", **kwargs: Any) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=kwargs.pop("region_name", "us-east-1"),
                            aws_access_key_id=kwargs.pop("aws_access_key_id", "testing"),
                            aws_secret_access_key="testing", **kwargs)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("elasticache-local")
    port = free_port()
    env = dict(os.environ)
    env.update({
        "ELASTICACHE_LOCAL_PORT": str(port),
        "ELASTICACHE_LOCAL_DATA_DIR": str(data_dir),
        "ELASTICACHE_LOCAL_NODE_NETWORK": "127.0.120.0/24",
        "ELASTICACHE_LOCAL_ENDPOINT_NETWORK": "127.0.121.0/24",
        "ELASTICACHE_LOCAL_ADDRESSING": "loopback",
        "ELASTICACHE_LOCAL_LOG_LEVEL": "info",
    })
    live = LiveServer(f"http://127.0.0.1:{port}", data_dir, env)
    live.start()
    try:
        yield live
    finally:
        try:
            if live.proc is not None:
                live.reset()
        finally:
            live.stop()
            # Whatever a failed test left behind: stop every node under our data directory.
            runtime = ProcessRuntime(data_dir / "nodes", {})
            for node in runtime.list_managed():
                runtime.remove(node.name)
            runtime.close()


@pytest.fixture
def ec(server: LiveServer) -> Iterator[Any]:
    """A boto3 client on a clean service."""
    yield server.client()
    server.reset()
