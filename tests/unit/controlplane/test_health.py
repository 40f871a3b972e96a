"""The health monitor's verdicts on what a probe answers."""

from __future__ import annotations

from typing import Any

from controlplane.reconciler.health import HealthMonitor
from controlplane.state.records import ResourceKey
from engine import ProbeResult

KEY = ResourceKey("cache-cluster", "123456789012", "us-east-1", "c")
LOADING = ProbeResult(False, None, None, "LOADING Redis is loading the dataset in memory", 0.1)
TIMED_OUT = ProbeResult(False, None, None, "timed out", 250.0)


class Probes:
    """A runtime that answers every probe with `result`."""

    def __init__(self, result: ProbeResult) -> None:
        self.result = result

    def probe(self, name: str, timeout: float) -> ProbeResult:
        return self.result


def _monitor(result: ProbeResult) -> tuple[HealthMonitor, list[str], list[float]]:
    now = [100.0]
    down: list[str] = []
    runtime: Any = Probes(result)
    monitor = HealthMonitor(runtime, lambda key, name: down.append(name), interval=0.2, down_after=1.0,
                            monotonic=lambda: now[0])
    monitor.watch("n", KEY)
    return monitor, down, now


def test_a_node_loading_its_data_for_long_is_not_down() -> None:
    """A restore of 1 GB loads for seconds: a node that was declared down meanwhile was
    restarted empty after it had loaded (and the cluster read `available`)."""
    monitor, down, now = _monitor(LOADING)
    for _ in range(50):  # 10 s of -LOADING
        now[0] += 0.2
        monitor.probe_all()
    assert down == [] and not monitor.is_down("n")


def test_a_node_that_does_not_answer_is_down_after_down_after() -> None:
    monitor, down, now = _monitor(TIMED_OUT)
    for _ in range(6):
        now[0] += 0.2
        monitor.probe_all()
    assert down == ["n"] and monitor.is_down("n")
