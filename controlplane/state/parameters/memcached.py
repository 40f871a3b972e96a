"""The memcached command-line option each Memcached parameter (memcached.json) becomes at a
node's start."""

from __future__ import annotations

# Option names of memcached's -o, by parameter (the others are flags: see FLAGS).
EXTENDED = ("slab_reassign", "slab_automove", "hash_algorithm", "lru_crawler", "lru_maintainer", "idle_timeout",
            "track_sizes", "watcher_logbuf_size", "worker_logbuf_size", "slab_chunk_max", "maxconns_fast")
# Parameters that are a flag of their own: (flag, whether it takes the value; else a bare flag when "1").
FLAGS = {"max_item_size": ("-I", True), "chunk_size": ("-n", True), "chunk_size_growth_factor": ("-f", True),
         "cas_disabled": ("-C", False), "error_on_memory_exhausted": ("-M", False), "disable_flush_all": ("-F", False)}


def command_line(values: dict[str, str]) -> dict[str, str]:
    """The memcached settings (engine.adapters.memcached argv flags) for parameter values that
    differ from the defaults: flags, and the -o extended options joined by commas."""
    flags: dict[str, str] = {}
    options: list[str] = []
    for name, value in sorted(values.items()):
        if name in FLAGS:
            flag, takes_value = FLAGS[name]
            if takes_value:
                flags[flag] = value
            elif value == "1":
                flags[flag] = ""
        elif name in EXTENDED:
            if name in ("slab_reassign", "lru_crawler", "lru_maintainer", "track_sizes", "maxconns_fast"):
                options.append(name if value == "1" else f"no_{name}")
            else:
                options.append(f"{name}={value}")
    if options:
        flags["-o"] = ",".join(options)
    return flags
