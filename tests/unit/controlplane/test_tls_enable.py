"""In-transit encryption turned on and off on a running replication group, in AWS's two steps
(TransitEncryptionEnabled with mode preferred, then required; back: preferred, then off), by a
rolling restart during which the nodes' replication links keep working: the fake runtime models
which links work (engine.security.link_works), so a node started with a link its primary cannot
serve never catches up and the roll would stall."""

from __future__ import annotations

from typing import Any

import pytest

from engine import NodeConfig, NodeInfo, RuntimeError_
from engine.security import AclUser, Credentials, NodeSecurity, TlsFiles, link_works
from tests.harness import ApiError
from tests.unit.controlplane.conftest import World

GROUP = {"ReplicationGroupDescription": "d", "Engine": "redis", "CacheNodeType": "cache.t3.micro",
         "NumCacheClusters": 3}
MEMBERS = ("rg-001", "rg-002", "rg-003")


def _rg(world: World) -> dict[str, Any]:
    return world.call("DescribeReplicationGroups", ReplicationGroupId="rg")["ReplicationGroups"][0]


def _node(member_id: str) -> str:
    return f"123456789012-us-east-1-{member_id}-0001"


def _tls(world: World, member_id: str) -> TlsFiles | None:
    security = world.runtime.config_of(_node(member_id)).security
    return None if security is None else security.tls


def _links_up(world: World) -> bool:
    """Every replica's link to its primary is up (as the fake models it)."""
    results = [world.runtime.probe(_node(m), 1.0) for m in MEMBERS]
    return all(r.ok and (r.role == "master" or r.details.get("master_link_status") == "up") for r in results)


def _modify(world: World, **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = world.call("ModifyReplicationGroup", ReplicationGroupId="rg", ApplyImmediately=True,
                                     **params)["ReplicationGroup"]
    return out


def _refused(world: World, **params: Any) -> str:
    with pytest.raises(ApiError) as err:
        _modify(world, **params)
    assert err.value.code == "InvalidParameterCombination", err.value
    return err.value.message


def test_tls_on_then_required_then_back_off_by_rolling_restarts(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle()
    assert _tls(world, "rg-001") is None
    assert "TransitEncryptionMode to preferred" in _refused(world, TransitEncryptionEnabled=True,
                                                            TransitEncryptionMode="required")

    out = _modify(world, TransitEncryptionEnabled=True, TransitEncryptionMode="preferred")
    assert out["Status"] == "modifying" and out["TransitEncryptionEnabled"] is False
    assert out["PendingModifiedValues"] == {"TransitEncryptionEnabled": True, "TransitEncryptionMode": "preferred"}
    starts = len(world.runtime.calls_of("start"))
    world.settle_until(lambda: _rg(world).get("TransitEncryptionEnabled") is True)
    group = _rg(world)
    assert group["Status"] == "available" and group["TransitEncryptionMode"] == "preferred"
    assert group["PendingModifiedValues"] == {}
    # Replicas first, the old primary last (after a switchover to a replica that has TLS).
    assert world.runtime.calls_of("start")[starts:] == [_node("rg-002"), _node("rg-003"), _node("rg-001")]
    # The replicas restarted while a member had no TLS came up replicating in plain text; once the
    # last one had TLS they were switched to replicate over TLS, live. The last one started so.
    assert sorted(world.runtime.calls_of("set_tls_replication")) == [_node("rg-002"), _node("rg-003")]
    for m in MEMBERS:
        tls = _tls(world, m)
        assert tls is not None and tls.mode == "preferred" and tls.replication
    assert _links_up(world)
    assert "In-transit encryption of replication group rg is now mode preferred on all its nodes" in world.events()

    assert "preferred first" in _refused(world, TransitEncryptionEnabled=False, TransitEncryptionMode="required")
    _modify(world, TransitEncryptionMode="required")
    world.settle_until(lambda: _rg(world).get("TransitEncryptionMode") == "required")
    assert all(t is not None and t.mode == "required" and t.replication for t in (_tls(world, m) for m in MEMBERS))
    assert _links_up(world)
    assert "preferred first" in _refused(world, TransitEncryptionEnabled=False)

    _modify(world, TransitEncryptionMode="preferred")
    world.settle_until(lambda: _rg(world).get("TransitEncryptionMode") == "preferred")
    switched = len(world.runtime.calls_of("set_tls_replication"))
    out = _modify(world, TransitEncryptionEnabled=False)
    assert out["PendingModifiedValues"] == {"TransitEncryptionEnabled": False}
    world.settle_until(lambda: _rg(world).get("TransitEncryptionEnabled") is False)
    group = _rg(world)
    assert group["Status"] == "available" and "TransitEncryptionMode" not in group
    assert all(_tls(world, m) is None for m in MEMBERS)
    # Before the first restart every node was switched to plain-text replication: the old primary
    # too, as the switchover connects it to a replica without TLS.
    assert len(world.runtime.calls_of("set_tls_replication")) - switched == 3
    assert _links_up(world)
    assert "In-transit encryption of replication group rg is now disabled on all its nodes" in world.events()


def test_a_restarted_control_plane_finishes_the_change(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle()
    _modify(world, TransitEncryptionEnabled=True, TransitEncryptionMode="preferred")
    real_start = world.runtime.start
    started: list[str] = []

    def one_start_then_fail(config: NodeConfig) -> NodeInfo:
        if started:
            raise RuntimeError_("the machine is busy")
        started.append(config.name)
        return real_start(config)

    monkeypatch.setattr(world.runtime, "start", one_start_then_fail)
    world.settle()  # one replica restarted with TLS (replicating in plain text), the next fails
    assert started == [_node("rg-002")] and _rg(world)["Status"] == "modifying"
    tls = _tls(world, "rg-002")
    assert tls is not None and not tls.replication
    monkeypatch.setattr(world.runtime, "start", real_start)
    world = world.restart()
    world.service.controller.enqueue_all()
    world.settle_until(lambda: _rg(world).get("TransitEncryptionEnabled") is True
                       and _rg(world)["Status"] == "available")
    assert all(t is not None and t.replication for t in (_tls(world, m) for m in MEMBERS))
    assert _links_up(world)
    world.service.store.close()


def test_tokens_and_user_groups_wait_until_tls_is_on(world: World) -> None:
    world.call("CreateReplicationGroup", ReplicationGroupId="rg", **GROUP)
    world.settle()
    assert "first, then set them" in _refused(world, TransitEncryptionEnabled=True, TransitEncryptionMode="preferred",
                                              AuthToken="Token-of-twenty-chars")
    _modify(world, TransitEncryptionEnabled=True, TransitEncryptionMode="preferred")
    world.settle_until(lambda: _rg(world).get("TransitEncryptionEnabled") is True)
    _modify(world, AuthToken="Token-of-twenty-chars")
    world.settle_until(lambda: _rg(world).get("AuthTokenEnabled") is True)
    assert _links_up(world)


def test_which_replication_links_work() -> None:
    admin = Credentials("svc", "pw")
    preferred = NodeSecurity(admin, (), TlsFiles("c", "k", "ca", "preferred"))
    required = NodeSecurity(admin, (), TlsFiles("c", "k", "ca", "required"))
    plain_link = NodeSecurity(admin, (), TlsFiles("c", "k", "ca", "preferred", replication=False))
    with_token = NodeSecurity(admin, (AclUser("default", ("on", ">tok")),), TlsFiles("c", "k", "ca", "preferred"))
    assert link_works(None, None) and link_works(None, preferred) and not link_works(None, required)
    assert not link_works(preferred, None) and link_works(preferred, required) and link_works(preferred, with_token)
    assert link_works(plain_link, None) and link_works(plain_link, preferred) and not link_works(plain_link, required)
    assert not link_works(plain_link, with_token) and not link_works(None, with_token)
