"""Run the benchmarks: `.venv/bin/python -m bench [--quick] [--only NAME] [--check]`.

Each benchmark prints a table beside its anchor, measured in the same run. Benchmarks are not
tests: the exit status is 0 whatever the numbers, unless --check asks for 1 on a missed target
(or a benchmark that could not run). Every server started is stopped, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
import traceback
from collections.abc import Callable
from types import FrameType

from bench import (
    cluster_failover,
    dashboard,
    describe,
    docker,
    failover,
    global_lag,
    iam,
    keyroute,
    lifecycle,
    metrics,
    scale,
    snapshots,
    tls,
)
from bench.lab import Lab
from bench.report import Table


def _codec(lab: Lab) -> list[Table]:
    """bench/codec.py prints its own table (no servers needed)."""
    from bench import codec

    codec.main()
    return []


BENCHMARKS: dict[str, Callable[[Lab], list[Table]]] = {
    "cluster_failover": cluster_failover.run,
    "codec": _codec,
    "dashboard": dashboard.run,
    "describe": describe.run,
    "docker": docker.run,
    "failover": failover.run,
    "global_lag": global_lag.run,
    "iam": iam.run,
    "keyroute": keyroute.run,
    "lifecycle": lifecycle.run,
    "metrics": metrics.run,
    "scale": scale.run,
    "snapshots": snapshots.run,
    "tls": tls.run,
}


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test of the numbers)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)

    names = args.only or list(BENCHMARKS)
    started = time.perf_counter()
    missed: list[str] = []
    broken: list[str] = []
    try:
        with Lab(quick=args.quick) as lab:
            for name in names:
                print(f"\n### {name}{' (quick)' if args.quick else ''}", flush=True)
                t0 = time.perf_counter()
                try:
                    tables = BENCHMARKS[name](lab)
                except Exception:
                    traceback.print_exc()
                    print(f"{name}: could not run (traceback above)", flush=True)
                    broken.append(name)
                    continue
                for table in tables:
                    print(table.render(), flush=True)
                    print()
                    missed += [f"{name}: {table.title[:40]}...: {r.name}" for r in table.missed()]
                print(f"({name} took {time.perf_counter() - t0:.1f} s)", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; servers and nodes stopped", file=sys.stderr)
        return 130
    total = time.perf_counter() - started
    print(f"\n{len(missed)} target(s) missed, {len(broken)} benchmark(s) failed to run; "
          f"total {total:.1f} s")
    for line in missed:
        print(f"  missed: {line}")
    if args.check and (missed or broken):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
