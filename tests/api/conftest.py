"""A live elasticache-local (real uvicorn, real nodes) for boto3, the aws cli and redis-py.

Nodes get addresses from a test-only loopback network so a developer's own running service is
never touched; everything the server started is stopped at the end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from engine.runtime.process import ProcessRuntime
from tests.eventually import NotYet, eventually
from tests.requires import missing

ROOT = Path(__file__).resolve().parents[2]

# Every api test runs on both runtimes. The docker runs use images built from this machine's own
# binaries (deploy/build-images.sh), so they need no registry.
RUNTIMES = ["process", pytest.param("docker", marks=pytest.mark.docker)]
LOCAL_IMAGES = {
    "ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS": "elasticache-local/redis:{version}",
    "ELASTICACHE_LOCAL_DOCKER_IMAGE_VALKEY": "elasticache-local/valkey:{version}",
    "ELASTICACHE_LOCAL_DOCKER_IMAGE_MEMCACHED": "elasticache-local/memcached:{version}",
    "ELASTICACHE_LOCAL_DOCKER_PULL": "false",
}
# Node and endpoint networks per runtime, so the two servers never meet on an address.
NETWORKS = {"process": ("127.0.120.0/24", "127.0.121.0/24"), "docker": ("127.0.122.0/24", "127.0.123.0/24")}
_docker_checked: list[str | None] = []


def _docker_problem() -> str | None:
    """Why the docker tests cannot run here (None: they can): no engine, or no local images."""
    try:
        import docker

        client = docker.DockerClient.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine is reachable ({type(exc).__name__}: {str(exc)[:200]})"
    # Idempotent and quick when the images exist (a few docker calls).
    built = subprocess.run(["bash", str(ROOT / "deploy" / "build-images.sh")], capture_output=True, text=True,
                           timeout=300)
    if built.returncode != 0:
        return f"cannot build the local node images (deploy/build-images.sh): {built.stderr.strip()[-500:]}"
    return None


def require_docker() -> None:
    """Skip a docker test with the reason where no Docker engine is reachable; in CI (CI=true),
    where .ci/run installs and starts Docker, fail instead: a skip there would hide a broken setup."""
    if not _docker_checked:
        _docker_checked.append(_docker_problem())
    problem = _docker_checked[0]
    if problem is None:
        return
    missing(f"{problem}; start Docker (deploy/docker-setup.sh) to run the docker tests")


def remove_docker_nodes(data_dir: Path) -> None:
    """Remove every container and volume a docker-runtime server on `data_dir` owns."""
    from engine.runtime.docker import DockerRuntime, owner_for

    runtime = DockerRuntime(owner=owner_for(str(data_dir.resolve())), pull=False, images={
        "redis": LOCAL_IMAGES["ELASTICACHE_LOCAL_DOCKER_IMAGE_REDIS"],
        "memcached": LOCAL_IMAGES["ELASTICACHE_LOCAL_DOCKER_IMAGE_MEMCACHED"]})
    try:
        for node in runtime.list_managed():
            runtime.remove(node.name)
    finally:
        runtime.close()


def server_env(runtime: str, data_dir: Path, port: int) -> dict[str, str]:
    node_network, endpoint_network = NETWORKS[runtime]
    env = dict(os.environ)
    env.update({
        "ELASTICACHE_LOCAL_PORT": str(port),
        "ELASTICACHE_LOCAL_DATA_DIR": str(data_dir),
        "ELASTICACHE_LOCAL_NODE_NETWORK": node_network,
        "ELASTICACHE_LOCAL_ENDPOINT_NETWORK": endpoint_network,
        "ELASTICACHE_LOCAL_ADDRESSING": "loopback",
        "ELASTICACHE_LOCAL_LOG_LEVEL": "info",
        "ELASTICACHE_LOCAL_RUNTIME": runtime,
    })
    if runtime == "docker":
        env.update(LOCAL_IMAGES)
    return env


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
    runtime: str = "process"  # "process" | "docker": what runs the nodes

    def start(self) -> None:
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        proc = self.proc

        def answers() -> bool:
            try:
                urllib.request.urlopen(self.url + "/api/v1/health", timeout=1).read()
                return True
            except OSError:
                if proc.poll() is not None:  # exited: ends the wait at once
                    raise RuntimeError("server exited") from None
                return False

        try:
            eventually(answers, 30.0, 0.05, "the server answering")
        except (NotYet, RuntimeError):
            raise RuntimeError("server did not start:\n" + (self.data_dir / "server.log").read_text()[-3000:]) from None

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
        # A strict-profile server's JSON API needs its admin token.
        token = self.env.get("ELASTICACHE_LOCAL_ADMIN_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        req = urllib.request.Request(self.url + "/api/v1/reset", method="POST", headers=headers)
        urllib.request.urlopen(req, timeout=60).read()

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON API call (`/api/v1/...`): its JSON answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def aws(self, *args: str) -> Any:
        """`aws elasticache ARGS` (the cli installed with the service) against this server: its
        JSON output, parsed; the command must succeed."""
        command = [str(Path(sys.executable).with_name("aws")), "elasticache", "--endpoint-url", self.url,
                   "--output", "json", *args]
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION="us-east-1")
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    def client(self, service: str = "elasticache", **kwargs: Any) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name=kwargs.pop("region_name", "us-east-1"),
                            aws_access_key_id=kwargs.pop("aws_access_key_id", "testing"),
                            aws_secret_access_key="testing", **kwargs)


@contextlib.contextmanager
def running_server(runtime: str, data_dir: Path, **env: str) -> Iterator[LiveServer]:
    """A live service on `data_dir` (settings from server_env, then `env`), reset, stopped and
    cleaned of every node it started at the end, whatever the test did."""
    port = free_port()
    live = LiveServer(f"http://127.0.0.1:{port}", data_dir, {**server_env(runtime, data_dir, port), **env},
                      runtime=runtime)
    try:
        live.start()
        yield live
    finally:
        try:
            if live.proc is not None:
                live.reset()
        finally:
            live.stop()
            # Whatever a failed test left behind: stop every node under our data directory.
            nodes = ProcessRuntime(data_dir / "nodes", {})
            for node in nodes.list_managed():
                nodes.remove(node.name)
            nodes.close()
            if runtime == "docker":
                remove_docker_nodes(data_dir)


@pytest.fixture(scope="session", params=RUNTIMES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    runtime: str = request.param
    if runtime == "docker":
        require_docker()
    with running_server(runtime, tmp_path_factory.mktemp(f"elasticache-local-{runtime}")) as live:
        yield live


@pytest.fixture
def ec(server: LiveServer) -> Iterator[Any]:
    """A boto3 client on a clean service."""
    yield server.client()
    server.reset()
