"""NodeRuntime on local processes (redis-server / valkey-server / memcached children):

  runtime.py    ProcessRuntime: starting, stopping, inspecting and removing nodes
  records.py    each node's record and directory (node.json, pid file, log, removal)
  exits.py      exit watching: pidfd watcher threads, each exit reported once
  readiness.py  readiness reports: the sd_notify socket nodes send READY=1 to
  pids.py       processes by pid: signals, states, command lines, reaping
"""

from engine.runtime.process.records import NODE_FILE
from engine.runtime.process.runtime import ProcessRuntime

__all__ = ["NODE_FILE", "ProcessRuntime"]
