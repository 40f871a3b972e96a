"""deploy/bootstrap.sh on a machine where things are missing, with stubs for apt-get and pip: a
held package lock is waited for with a message naming its holder (and apt is told to wait, a
bounded time), each package is a line, a failure says why, and the last line says how long set-up
took. The aws cli of the quick start is a dependency of the service itself."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("bash", "env", "dirname", "sha256sum", "cut", "cat", "id", "stat", "awk", "tee", "mktemp", "rm",
         "tail", "sed", "tr", "wc", "ls")

pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads /proc/locks (Linux)")

APT_STUB = """#!/bin/bash
echo "$*" >> "$STUB_LOG"
if [ "${STUB_APT:-}" = fail ]; then
  echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 42 (apt-get)" >&2
  exit 100
fi
case " $* " in
  *" update "*) echo "Get:1 http://mirror.invalid/debian bookworm InRelease [151 kB]" ;;
  *" install "*)
    for p in "$@"; do
      case $p in -*|install|*=*) ;; *)
        echo "Get:1 http://mirror.invalid/debian bookworm/main amd64 $p amd64 1.0-1 [989 kB]"
        echo "Setting up $p (1.0-1) ..." ;;
      esac
    done ;;
esac
"""

PIP_STUB = """#!/bin/bash
case " $* " in
  *" --progress-bar off "*)
    echo "Obtaining file://$PWD"
    echo "Collecting fastapi>=0.110 (from elasticache-local==0.1.0)"
    echo "  Downloading fastapi-0.115.0-py3-none-any.whl (94 kB)"
    echo "Collecting awscli>=1.32 (from elasticache-local==0.1.0)"
    echo "Installing collected packages: fastapi, awscli, elasticache-local"
    echo "Successfully installed awscli-1.0 elasticache-local-0.1.0 fastapi-0.115.0" ;;
esac
"""


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A copy of the set-up scripts, and an environment whose PATH has the tools they use, stub
    apt-get, and no redis-server, memcached, initdb or brew."""
    repo = tmp_path / "repo"
    (repo / "deploy").mkdir(parents=True)
    for name in ("bootstrap.sh", "apt.sh"):
        shutil.copy(ROOT / "deploy" / name, repo / "deploy" / name)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(PIP_STUB)
    (venv_bin / "python").chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "apt-get").write_text(APT_STUB)
    (bin_dir / "apt-get").chmod(0o755)
    lock = tmp_path / "lock-frontend"
    lock.touch()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "STUB_LOG": str(tmp_path / "apt.log"),
           "APT_LOCK_FILES": str(lock), "APT_LOCK_WAIT": "7"}
    yield repo, env


def run(repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(repo / "deploy" / "bootstrap.sh")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_held_lock_is_waited_for_each_package_is_a_line_and_the_time_is_told(
        machine: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = machine
    with open(tmp_path / "lock-frontend", "r+") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)  # as apt holds it
        done = run(repo, env)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert err.count(f"the package lock is held by process {os.getpid()} (") == 1, err  # once, not per call
    assert "waiting up to 7 s for it to finish" in err
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls and all("-o DPkg::Lock::Timeout=7" in c for c in calls), calls  # apt waits too, bounded
    assert "bootstrap:   fetching redis-server 989 kB" in err and "bootstrap:   set up memcached" in err, err
    assert "bootstrap:   (1) fastapi>=0.110" in err and "bootstrap:   (2) awscli>=1.32" in err, err
    assert "bootstrap: installing 3 packages" in err, err
    assert re.search(r"bootstrap: set-up took 0 min \d+ s\n\Z", err), err
    want = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    assert (repo / ".venv" / ".installed").read_text().strip() == want


def test_a_lock_still_held_when_apt_gives_up_says_so_and_fails(
        machine: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = machine
    with open(tmp_path / "lock-frontend", "r+") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        done = run(repo, {**env, "STUB_APT": "fail"})
    assert done.returncode != 0
    err = done.stderr
    assert "apt-get update failed; its last lines:" in err and "E: Could not get lock" in err, err
    assert f"the package lock is still held by process {os.getpid()} (" in err, err
    assert "after 7 s" in err and "APT_LOCK_WAIT=seconds" in err, err
    assert "set-up took" not in err


def test_nothing_to_do_says_nothing(machine: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = machine
    bin_dir = Path(env["PATH"])
    for name in ("redis-server", "memcached", "haproxy", "saslpasswd2", "initdb", "cc"):
        (bin_dir / name).symlink_to(bin_dir / "id")  # present, as far as `command -v` knows
    want = hashlib.sha256((repo / "pyproject.toml").read_bytes()).hexdigest()
    (repo / ".venv" / ".installed").write_text(want + "\n")
    done = run(repo, env)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not (tmp_path / "apt.log").exists()


def test_the_aws_cli_of_the_quick_start_comes_with_the_service() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(re.match(r"awscli\b", d) for d in project["dependencies"]), project["dependencies"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize(("status", "make_status"), [(130, 0), (3, 2)])
def test_make_serve_stopped_with_ctrl_c_is_not_an_error(status: int, make_status: int) -> None:
    """Ctrl-C stops `serve` with 130: make must not add `Error 130` under the service's own stop
    message. Any other failure still fails make."""
    done = subprocess.run(["make", "-s", "serve", f"SERVE=sh -c 'exit {status}'"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == make_status, done.stderr
    assert ("Error" in done.stderr) == (make_status != 0), done.stderr
