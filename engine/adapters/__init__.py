"""Engine adapters: per-engine knowledge of command lines, config files and probes."""

from __future__ import annotations

from engine.adapters.base import EngineAdapter, Launch
from engine.adapters.memcached import MemcachedAdapter
from engine.adapters.redis import RedisAdapter

__all__ = ["ENGINES", "EngineAdapter", "Launch", "MemcachedAdapter", "RedisAdapter", "adapter_for"]

ENGINES = ("redis", "valkey", "memcached")


def adapter_for(engine: str) -> EngineAdapter:
    """The adapter of "redis", "valkey" or "memcached"; ValueError for anything else."""
    # Adapters are stateless: a new one per call keeps the module free of singletons.
    if engine in ("redis", "valkey"):
        return RedisAdapter()
    if engine == "memcached":
        return MemcachedAdapter()
    raise ValueError(f"unknown engine {engine!r} (known: {', '.join(ENGINES)})")
