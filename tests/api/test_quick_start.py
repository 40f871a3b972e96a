"""The README's first command, `make serve`, as a user runs it: it prepares what it needs
(deploy/bootstrap.sh, quick when everything is in place), starts the service, answers, and stops
on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from tests.api.conftest import ROOT, free_port, server_env
from tests.eventually import NotYet, eventually


def test_make_serve_starts_the_service_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = server_env("process", tmp_path, port)
    env["ELASTICACHE_LOCAL_NODE_NETWORK"] = "127.0.126.0/24"
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
            try:
                found: dict[str, Any] = json.loads(urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/health", timeout=1).read())
                return found
            except OSError:
                return None

        try:
            # bootstrap may have to install the service's package
            health = eventually(health_of_serve, 120.0, 0.1, "make serve answering")
        except (NotYet, RuntimeError):
            raise AssertionError(f"make serve did not answer:\n{log_path.read_text()[-3000:]}") from None
        assert health["status"] == "ok" and health["runtime"] == "process"
        out = log_path.read_text()
        assert f"the ElastiCache API is at http://127.0.0.1:{port}" in out
        assert "aws elasticache create-cache-cluster" in out  # the example command
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(20) in (0, 2, -signal.SIGINT, 130), log_path.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
