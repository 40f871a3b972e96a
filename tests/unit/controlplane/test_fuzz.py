"""Random and malformed requests, for every operation, through the whole request path (codec,
handlers, store) on the fake runtime: never a server error, and a refused request never
changes what exists."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.query import Identity
from controlplane.state.kinds import RECORD_TYPES
from controlplane.state.reserved import OFFERINGS
from tests.unit.controlplane.conftest import World
from tests.unit.protocol.strategies import botocore_wire_pairs, input_value, wire_keys

_world: dict[str, World] = {}
# FUZZ_EXAMPLES=2000 for a longer hunt than the suite's.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))


def _the_world(tmp: Path) -> World:
    """One world for all examples: built once, with resources that must survive the fuzzing."""
    if "w" not in _world:
        w = World(tmp)
        w.call("CreateCacheCluster", CacheClusterId="keep", Engine="redis", CacheNodeType="cache.t3.micro",
               Tags=[{"Key": "k", "Value": "v"}])
        w.call("CreateCacheCluster", CacheClusterId="keep-mc", Engine="memcached", CacheNodeType="cache.t3.micro",
               NumCacheNodes=2)
        # The built-in records (the default user, subnet group and parameter groups) exist before
        # the fuzzing, as they do once anything has asked for them: a refused request must not be
        # what adds them.
        w.call("DescribeUsers")
        w.call("CreateCacheParameterGroup", CacheParameterGroupName="keep-pg", CacheParameterGroupFamily="redis7",
               Description="d")
        w.call("ModifyCacheParameterGroup", CacheParameterGroupName="keep-pg",
               ParameterNameValues=[{"ParameterName": "maxmemory-policy", "ParameterValue": "allkeys-lru"}])
        w.call("CreateCacheSubnetGroup", CacheSubnetGroupName="keep-sg", CacheSubnetGroupDescription="d",
               SubnetIds=["subnet-a-us-east-1a"])
        w.call("PurchaseReservedCacheNodesOffering", ReservedCacheNodesOfferingId=OFFERINGS[0].id,
               ReservedCacheNodeId="keep-ri")
        w.settle()
        _world["w"] = w
    return _world["w"]


def _snapshot(w: World) -> list[Any]:
    """Every record's spec and tags, of every kind (status is the control loop's, not the request's)."""
    return [(r.key, r.generation, getattr(r, "spec", None), r.tags) for kind in RECORD_TYPES.values()
            for r in w.service.store.records(kind)]


def _code(body: bytes) -> str:
    root = ElementTree.fromstring(body)
    code = root.find(".//{*}Code")
    return code.text or "" if code is not None else ""


def _check(w: World, pairs: list[tuple[str, str]], seen: dict[str, int]) -> None:
    before = _snapshot(w)
    status, body = w.service.query.dispatch(pairs, Identity("123456789012", "us-east-1"), "fuzz")
    outcome = "ok" if status < 300 else _code(body)
    seen[outcome] = seen.get(outcome, 0) + 1
    assert status < 500 or (status == 501 and _code(body) == "NotImplemented"), body[:500]
    ElementTree.fromstring(body)  # always well-formed XML
    if status >= 400:
        assert _snapshot(w) == before, f"a refused request changed state: {pairs}"
    else:
        # Whatever a valid random request created must not start anything we cannot stop.
        w.settle()


def _operations(w: World) -> list[str]:
    return list(w.service.api.operation_names)


@st.composite
def _valid_then_mutated(draw: st.DrawFn, names: list[str], w: World) -> list[tuple[str, str]]:
    op = w.service.api.operation(draw(st.sampled_from(names)))
    assert op is not None
    params = draw(input_value(op.input_shape)) if op.input_shape is not None else {}
    pairs = [("Action", op.name), ("Version", "2015-02-02")]
    pairs += [p for p in botocore_wire_pairs(op, params) if p[0] not in ("Action", "Version")]
    mutation = draw(st.sampled_from(["none", "drop", "garbage", "huge", "extra"]))
    if pairs[2:] and mutation == "drop":
        pairs.pop(draw(st.integers(2, len(pairs) - 1)))
    elif pairs[2:] and mutation == "garbage":
        i = draw(st.integers(2, len(pairs) - 1))
        pairs[i] = (pairs[i][0], draw(st.text(max_size=30)))
    elif pairs[2:] and mutation == "huge":
        i = draw(st.integers(2, len(pairs) - 1))
        pairs[i] = (pairs[i][0], draw(st.sampled_from(["9" * 40, "-" + "9" * 40, "1e309", "x" * 100_000])))
    elif mutation == "extra" and op.input_shape is not None:
        keys = wire_keys(op.input_shape)
        if keys:
            pairs.append((draw(st.sampled_from(keys)) + draw(st.sampled_from(["", ".1", ".member.0", ".x"])),
                          draw(st.text(max_size=20))))
    return pairs


def test_random_valid_and_mutated_requests(tmp_path_factory: Any) -> None:
    w = _the_world(tmp_path_factory.mktemp("fuzz"))
    # Implemented operations weigh more: they are where the logic is.
    implemented = [n for n in w.service.query.handlers if n != "DeleteCacheCluster"]
    names = [n for n in _operations(w) if n != "DeleteCacheCluster"] + implemented * 8
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES * 4, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        _check(w, data.draw(_valid_then_mutated(names, w)), seen)

    run()
    # Not vacuous: requests got through and were refused for many different reasons.
    assert seen.get("ok", 0) >= 5 and len(seen) >= 5, seen
    kept = w.call("DescribeCacheClusters", CacheClusterId="keep")["CacheClusters"][0]
    assert kept["CacheClusterStatus"] in ("available", "modifying", "rebooting cache cluster nodes")


def test_garbage_pairs(tmp_path_factory: Any) -> None:
    w = _the_world(tmp_path_factory.mktemp("fuzz2"))
    names = _operations(w)
    seen: dict[str, int] = {}

    @settings(max_examples=EXAMPLES * 3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(action=st.one_of(st.sampled_from(names), st.text(max_size=20)),
           pairs=st.lists(st.tuples(st.one_of(st.text(max_size=30), st.sampled_from(
               ["CacheClusterId", "NumCacheNodes", "Tags.Tag.1.Key", "Tags.member.1.Key", "MaxRecords", "Marker",
                "StartTime", "ShowCacheNodeInfo", "CacheNodeIdsToReboot.CacheNodeId.1"])),
               st.text(max_size=40)), max_size=8),
           with_action=st.booleans())
    def run(action: str, pairs: list[tuple[str, str]], with_action: bool) -> None:
        _check(w, ([("Action", action)] if with_action else []) + pairs, seen)

    run()
    assert {"MissingAction", "InvalidAction"} <= set(seen), seen
