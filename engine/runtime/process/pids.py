"""Processes by pid, as the process runtime sees its nodes: signals, states, command lines,
reaping, and waiting on descriptors (pidfds, the readiness socket) until the runtime closes.

Linux answers from /proc; elsewhere (macOS) `ps` does."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

HAS_PROC = os.path.exists("/proc/self/stat")


def signal_node(pid: int, sig: signal.Signals, *, group: bool) -> None:
    """Signal the node, or its whole process group (nodes lead their own session, so the group
    also holds a redis fork child doing BGSAVE or a full sync). A process already gone is fine."""
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def reap(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    """Collect an exited process's status, so it leaves no zombie."""
    if proc is not None:
        proc.wait()
        return
    # An adopted node may still be our child (same process, earlier runtime).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pidfd_works() -> bool:
    """Whether exits can be awaited on a pidfd here (Linux >= 5.3, not blocked by seccomp)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:  # ENOSYS on kernels < 5.3, EPERM under some seccomp profiles
        return False
    os.close(fd)
    return True


def _ps(pid: int, column: str) -> str | None:
    try:
        out = subprocess.run(
            ["ps", "-o", f"{column}=", "-p", str(pid)], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def proc_state(pid: int) -> str | None:
    """The one-letter process state (R, S, T, Z, ...), None if there is no such process."""
    if HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            return None
        end = stat.rfind(")")
        return stat[end + 2 : end + 3] or None
    out = _ps(pid, "stat")
    return out[:1] if out else None


def is_stopped(pid: int) -> bool:
    """Stopped by SIGSTOP (a paused node)."""
    return proc_state(pid) in ("T", "t")


def is_gone(pid: int) -> bool:
    """No such process, or only its zombie."""
    return proc_state(pid) in (None, "Z")


def await_stopped(pid: int, stopped: bool, timeout: float = 1.0) -> None:
    """After SIGSTOP (`stopped`) or SIGCONT: signals are delivered asynchronously, so wait
    (about a millisecond) until the process's state shows it, or it has gone."""
    deadline = time.monotonic() + timeout
    while is_stopped(pid) != stopped and time.monotonic() < deadline:
        if is_gone(pid):
            break
        time.sleep(0.001)


def pid_running(pid: int) -> bool:
    """Whether pid is a live (possibly stopped) process; zombies count as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False  # it was our child and has just been reaped
    except ChildProcessError:
        pass
    return not is_gone(pid)


def _cmdline(pid: int) -> str | None:
    if HAS_PROC:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            return None
        return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return _ps(pid, "command")


def runs(pid: int, binary: str, marker: str, directory: Path) -> bool:
    """Whether pid is the node that runs `binary` with `marker` (pids get reused, so a pid file
    alone proves nothing): its command line starts with the binary and names the marker (its
    config or pid file: redis-server shows it in its process title), or, for servers without
    that title, its working directory is the node's (redis chdirs to `dir`)."""
    if is_gone(pid):
        return False
    cmdline = _cmdline(pid)
    if not cmdline or not cmdline.startswith(binary):
        return False
    if marker in cmdline:
        return True
    if HAS_PROC:
        try:
            return os.readlink(f"/proc/{pid}/cwd") == str(directory)
        except OSError:
            return False
    return False


def readable(fds: list[int], timeout: float | None) -> set[int]:
    """The readable ones of `fds`, waiting up to `timeout` seconds (None: for ever). poll(), not
    select(): a service with many connections has descriptors above select's 1024."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    events = poller.poll(None if timeout is None else max(0, int(timeout * 1000)))
    return {fd for fd, _ in events}


class Closing:
    """A runtime's close() as threads blocked in poll() see it: an event, and a pipe whose read
    end turns readable once the event is set (`fd` goes into every poll of the runtime's
    threads, so close() wakes them without a timeout to wait out)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.fd, self._write_fd = os.pipe()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def set(self) -> None:
        self._event.set()
        os.write(self._write_fd, b"x")  # never read: every poller sees it

    def release(self) -> None:
        """Close the pipe, once no thread polls it any more."""
        os.close(self.fd)
        os.close(self._write_fd)
