"""The README's quick start as a user runs it: `make serve` prepares what it needs
(deploy/bootstrap.sh, quick when everything is in place) and starts the service; the README's
commands, in another shell, work as written; a second `serve` on the taken port says so in one
line; Ctrl-C and SIGTERM stop it and say which nodes keep running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from engine.runtime.process import ProcessRuntime
from tests.api.conftest import ROOT, free_port, server_env
from tests.eventually import NotYet, eventually

README_URL = "http://127.0.0.1:8379"
README_NODE = "127.0.100.1"  # the first node address of the default NODE_NETWORK


def readme_commands() -> str:
    """The quick start's commands: the sh block after "Then, in another terminal"."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Then, in another terminal.*?```sh\n(.*?)\n```", text, re.S)
    assert block, "README.md: no quick start commands"
    return block.group(1)


def path_without_aws() -> str:
    """PATH less every directory holding an `aws`: the commands find one only as the README says."""
    keep = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not os.access(os.path.join(d, "aws"), os.X_OK)]
    return os.pathsep.join(keep)


def health_at(port: int) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/health", timeout=1).read())
        return found
    except OSError:
        return None


def remove_nodes(data_dir: Path) -> None:
    nodes = ProcessRuntime(data_dir / "nodes", {})
    try:
        for node in nodes.list_managed():
            nodes.remove(node.name)
    finally:
        nodes.close()


def test_make_serve_then_the_readme_commands_as_written_then_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = server_env("process", tmp_path, port)
    node_network = "127.0.126"
    env["ELASTICACHE_LOCAL_NODE_NETWORK"] = f"{node_network}.0/24"
    env["ELASTICACHE_LOCAL_ENDPOINT_NETWORK"] = "127.0.127.0/24"
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        # Its own process group, as a terminal's foreground job: Ctrl-C reaches make and the service.
        proc = subprocess.Popen(["make", "--no-print-directory", "serve"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def health_of_serve() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise RuntimeError("make serve exited")  # ends the wait at once
            return health_at(port)

        try:
            # bootstrap may have to install the service's package
            health = eventually(health_of_serve, 120.0, 0.1, "make serve answering")
        except (NotYet, RuntimeError):
            raise AssertionError(f"make serve did not answer:\n{log_path.read_text()[-3000:]}") from None
        assert health["status"] == "ok" and health["runtime"] == "process"
        out = log_path.read_text()
        assert f"the ElastiCache API is at http://127.0.0.1:{port}" in out
        assert "aws elasticache create-cache-cluster" in out  # the example command

        # The README's commands, in a shell of their own, with this test's address for the README's
        # (and the first node address of its node network for the README's first node address).
        script = readme_commands().replace(README_URL, f"http://127.0.0.1:{port}").replace(
            README_NODE, f"{node_network}.1")
        shell_env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "ELASTICACHE_LOCAL_"))}
        shell_env["PATH"] = path_without_aws()
        assert shutil.which("aws", path=shell_env["PATH"]) is None
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=shell_env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{script}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert f'"Address": "{node_network}.1"' in done.stdout  # the address the README uses is the node's
        assert done.stdout.rstrip().endswith("OK"), done.stdout[-500:]  # redis-cli set k v

        # A second service on the taken port: one line saying what holds it, nothing started.
        second = subprocess.run([sys.executable, "-m", "controlplane", "serve"], cwd=ROOT,
                                env={**env, "ELASTICACHE_LOCAL_DATA_DIR": str(tmp_path / "second")},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and second.stdout == "", second
        assert second.stderr.count("\n") == 1 and "another elasticache-local" in second.stderr, second.stderr
        assert not (tmp_path / "second").exists()

        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(20) in (0, 2, 130, -signal.SIGINT), log_path.read_text()[-2000:]
        out = log_path.read_text()
        assert (f"stopped the API at http://127.0.0.1:{port} and the control loop; 1 cache node(s) keep running"
                in out), out[-2000:]
        assert "Traceback" not in out, out[-3000:]
        assert ProcessRuntime(tmp_path / "nodes", {}).list_managed()[0].state == "running"  # as it said
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        remove_nodes(tmp_path)


def test_a_taken_port_is_one_line_naming_its_holder_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        data_dir = tmp_path / "data"
        env = server_env("process", data_dir, port)
        done = subprocess.run([sys.executable, "-m", "controlplane", "serve"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done
    assert done.stdout == "", done.stdout  # no banner for a service that never answered
    line = done.stderr
    assert line.count("\n") == 1, line
    assert f"127.0.0.1:{port} is already in use by process {os.getpid()} (" in line, line
    assert "--port N (or ELASTICACHE_LOCAL_PORT=N)" in line, line
    assert not data_dir.exists()  # nothing was built, so no node can be half-started


def test_sigterm_stops_the_service_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "controlplane", "serve"], cwd=ROOT,
                            env=server_env("process", tmp_path, port), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        def answering() -> dict[str, Any] | None:
            if proc.poll() is not None:
                raise RuntimeError("serve exited")
            return health_at(port)

        eventually(answering, 30.0, 0.05, "serve answering")
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert out.index("the ElastiCache API is at") < out.index("stopped the API"), out
    assert f"stopped the API at http://127.0.0.1:{port} and the control loop; no cache node was running" in out
