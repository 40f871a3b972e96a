"""What only the fake runtime does: fault injection (crash, hang, failed starts, slow starts),
roles and replication as the control plane's tests need them, and the record of calls. The
contract it shares with the real runtimes is in test_runtime_contract.py."""

from __future__ import annotations

import dataclasses

import pytest

from engine.runtime.base import NodeConfig, NodeState, RuntimeError_
from engine.runtime.fake import FakeRuntime


def config(name: str = "n1", engine: str = "redis", version: str = "7.0.15") -> NodeConfig:
    return NodeConfig(name=name, engine=engine, version=version, host="127.0.200.1", port=6379, memory_mb=64)


@pytest.fixture
def rt() -> FakeRuntime:
    return FakeRuntime()


def test_versions_are_the_defaults_or_those_given(rt: FakeRuntime) -> None:
    assert rt.available_versions()["redis"] == ("7.0.15", "6.2.14")
    assert FakeRuntime({"redis": ("7.2.4",)}).available_versions() == {"redis": ("7.2.4",)}


def test_crash_calls_listener_and_restart_gets_new_pid(rt: FakeRuntime) -> None:
    exits: list[str] = []
    rt.set_exit_listener(exits.append)
    first = rt.start(config())
    rt.crash("n1")
    assert exits == ["n1"]
    assert rt.inspect("n1").state is NodeState.EXITED  # type: ignore[union-attr]
    assert rt.probe("n1", 0.5).error == "Connection refused"
    again = rt.start(config())
    assert again.state is NodeState.RUNNING and again.pid != first.pid
    rt.crash("n1")
    rt.crash("n1")  # already exited: no second notification
    assert exits == ["n1", "n1"]


def test_a_hung_node_fails_probes_but_stays_running(rt: FakeRuntime) -> None:
    rt.start(config())
    rt.hang("n1")
    result = rt.probe("n1", 0.25)
    assert not result.ok and result.error == "timed out"
    assert rt.inspect("n1").state is NodeState.RUNNING  # type: ignore[union-attr]
    rt.unhang("n1")
    assert rt.probe("n1", 0.25).ok


def test_fail_next_starts(rt: FakeRuntime) -> None:
    rt.fail_next_starts(2)
    for _ in range(2):
        with pytest.raises(RuntimeError_) as caught:
            rt.start(config())
        assert caught.value.temporary
    assert rt.start(config()).state is NodeState.RUNNING
    rt.fail_next_starts(1, temporary=False)
    with pytest.raises(RuntimeError_) as caught:
        rt.start(config("n2"))
    assert not caught.value.temporary


def test_ready_after_n_probes(rt: FakeRuntime) -> None:
    rt.set_ready_after(3)
    rt.start(config())
    assert [rt.probe("n1", 0.1).ok for _ in range(5)] == [False, False, False, True, True]
    rt.crash("n1")
    rt.start(config())  # a restart starts up again
    assert [rt.probe("n1", 0.1).ok for _ in range(4)] == [False, False, False, True]


def test_a_restarted_node_takes_its_role_from_its_config(rt: FakeRuntime) -> None:
    """As a real redis-server does: REPLICAOF given at runtime is gone after a restart."""
    rt.start(config())
    rt.set_role("n1", "slave")
    rt.kill("n1")
    rt.start(config())
    assert rt.probe("n1", 0.1).role == "master"
    rt.kill("n1")
    rt.start(dataclasses.replace(config(), settings={"replicaof": "127.0.0.9 6379"}))
    assert rt.probe("n1", 0.1).role == "slave"
    assert rt.primary_of["n1"] == ("127.0.0.9", 6379)


def test_replicate_and_addresses(rt: FakeRuntime) -> None:
    rt.start(config())
    rt.replicate("n1", ("127.0.0.9", 6379))
    assert rt.probe("n1", 0.1).role == "slave"
    rt.replicate("n1", None)
    assert rt.probe("n1", 0.1).role == "master"
    rt.set_addresses("n1", ["127.0.9.9"])
    assert rt.listeners("127.0.9.9") == ["n1"]
    rt.hang("n1")
    with pytest.raises(RuntimeError_):
        rt.replicate("n1", None)


def test_calls_are_recorded(rt: FakeRuntime) -> None:
    rt.start(config())
    rt.probe("n1", 0.1)
    rt.pause("n1")
    rt.resume("n1")
    rt.list_managed()
    rt.stop("n1")
    assert rt.calls == [
        ("start", "n1"),
        ("probe", "n1"),
        ("pause", "n1"),
        ("resume", "n1"),
        ("list_managed", ""),
        ("stop", "n1"),
    ]
    assert rt.calls_of("start") == ["n1"]
    assert rt.config_of("n1") == config()


