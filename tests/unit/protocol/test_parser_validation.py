"""The parser's answers to bad requests, and proof that nothing but ServiceError escapes it."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.protocol.errors import ServiceError, resolve_error
from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import parse
from tests.unit.protocol.strategies import botocore_wire_pairs, input_value, wire_keys

OPERATIONS = ApiModel().operation_names


def fails(api: ApiModel, pairs: list[tuple[str, str]]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        parse(api, pairs)
    return caught.value


def describe(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Action", "DescribeCacheClusters"), ("Version", "2015-02-02"), *extra]


def test_missing_action(api: ApiModel) -> None:
    assert fails(api, []).name == "MissingAction"
    assert fails(api, [("Version", "2015-02-02"), ("Action", "")]).name == "MissingAction"


def test_invalid_action(api: ApiModel) -> None:
    err = fails(api, [("Action", "DescribeEverything"), ("Version", "2015-02-02")])
    assert err.name == "InvalidAction"
    assert err.message == "Could not find operation DescribeEverything for version 2015-02-02"
    assert resolve_error(api, err.name) == ("InvalidAction", 400, "Sender")


def test_operation_without_parameters(api: ApiModel) -> None:
    parsed = parse(api, describe())
    assert parsed.operation == "DescribeCacheClusters" and parsed.params == {}


def test_missing_required_parameter(api: ApiModel) -> None:
    err = fails(api, [("Action", "DeleteCacheCluster")])
    assert err.name == "MissingParameter"
    assert err.message == "The request must contain the parameter CacheClusterId"
    assert resolve_error(api, err.name) == ("MissingParameter", 400, "Sender")


def test_missing_required_parameters_are_named(api: ApiModel) -> None:
    err = fails(api, [("Action", "CreateUser"), ("UserId", "u1"), ("UserName", "n"), ("Engine", "redis")])
    assert err.message == "The request must contain the parameter AccessString"
    # Inside a list element the full wire path is named (Filter requires Name and Values).
    err = fails(api, [("Action", "DescribeUsers"), ("Filters.member.1.Name", "user-id")])
    assert err.name == "MissingParameter"
    assert err.message == "The request must contain the parameter Filters.member.1.Values"


@pytest.mark.parametrize(
    ("pair", "needle"),
    [
        (("MaxRecords", "abc"), "MaxRecords"),
        (("MaxRecords", "1.5"), "MaxRecords"),
        (("MaxRecords", "99999999999999999999"), "out of range"),
        (("MaxRecords", "\u0661\u0662"), "MaxRecords"),  # Arabic-Indic digits: int() would take them
        (("ShowCacheNodeInfo", "maybe"), "ShowCacheNodeInfo"),
    ],
)
def test_bad_scalar_values(api: ApiModel, pair: tuple[str, str], needle: str) -> None:
    err = fails(api, describe(pair))
    assert err.name == "InvalidParameterValueException"
    assert needle in err.message
    assert resolve_error(api, err.name).code == "InvalidParameterValue"


def test_good_scalar_values(api: ApiModel) -> None:
    parsed = parse(api, describe(("MaxRecords", "20"), ("ShowCacheNodeInfo", "TRUE"), ("Bogus", "x")))
    assert parsed.params == {"MaxRecords": 20, "ShowCacheNodeInfo": True}  # unknown keys ignored


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01T10:20:30Z", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T10:20:30.123Z", datetime(2024, 3, 1, 10, 20, 30, 123000, tzinfo=UTC)),
        ("2024-03-01T10:20:30.123456Z", datetime(2024, 3, 1, 10, 20, 30, 123456, tzinfo=UTC)),
        ("2024-03-01T10:20:30", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("2024-03-01T12:20:30+02:00", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("1709288430", datetime(2024, 3, 1, 10, 20, 30, tzinfo=UTC)),
        ("1709288430.5", datetime(2024, 3, 1, 10, 20, 30, 500000, tzinfo=UTC)),
    ],
)
def test_timestamps(api: ApiModel, text: str, expected: datetime) -> None:
    parsed = parse(api, [("Action", "DescribeEvents"), ("StartTime", text)])
    value = parsed.params["StartTime"]
    assert value == expected and value.tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01T00:00:00Z", "1e10", "", "99999999999999"])
def test_bad_timestamps(api: ApiModel, text: str) -> None:
    err = fails(api, [("Action", "DescribeEvents"), ("StartTime", text)])
    assert err.name == "InvalidParameterValueException" and "StartTime" in err.message


def test_enum_violation(api: ApiModel) -> None:
    err = fails(api, [("Action", "DescribeEvents"), ("SourceType", "toaster")])
    assert err.name == "InvalidParameterValueException"
    assert "SourceType" in err.message and "cache-cluster" in err.message


def test_list_parameters(api: ApiModel) -> None:
    pairs = [("Action", "AddTagsToResource"), ("ResourceName", "arn"),
             ("Tags.Tag.2.Key", "b"), ("Tags.Tag.1.Key", "a"), ("Tags.Tag.1.Value", "x")]
    tags = [{"Key": "a", "Value": "x"}, {"Key": "b"}]
    assert parse(api, pairs).params == {"ResourceName": "arn", "Tags": tags}
    empty = parse(api, [("Action", "AddTagsToResource"), ("ResourceName", "arn"), ("Tags", "")])
    assert empty.params["Tags"] == []


@pytest.mark.parametrize("indices", [(1, 3), (2,), (1, 2, 4), (0, 1), (1, 1000000000000)])
def test_list_gaps(api: ApiModel, indices: tuple[int, ...]) -> None:
    pairs = [("Action", "AddTagsToResource"), ("ResourceName", "arn")]
    pairs += [(f"Tags.Tag.{i}.Key", f"k{i}") for i in indices]
    err = fails(api, pairs)
    assert err.name == "InvalidParameterValueException" and "Tags.Tag" in err.message


def test_list_length_constraints(api: ApiModel) -> None:
    pairs = [("Action", "DescribeUpdateActions")]
    pairs += [(f"ServiceUpdateStatus.member.{i}", "available") for i in range(1, 5)]  # max 3
    err = fails(api, pairs)
    assert err.name == "InvalidParameterValueException" and "ServiceUpdateStatus" in err.message


def test_pattern_and_length(api: ApiModel) -> None:
    base = [("Action", "CreateUser"), ("UserName", "n"), ("Engine", "redis"), ("AccessString", "on ~* +@all")]
    err = fails(api, [*base, ("UserId", "123")])  # the pattern wants a letter
    assert err.name == "InvalidParameterValueException" and "UserId" in err.message
    assert parse(api, [*base, ("UserId", "alice")]).params["UserId"] == "alice"


def test_every_error_name_used_in_controlplane_resolves(api: ApiModel) -> None:
    # A ServiceError name that is neither a model shape nor a common error is a bug:
    # find the literal names raised anywhere in controlplane/ and resolve each.
    root = Path(__file__).resolve().parents[3] / "controlplane"
    names = set()
    for path in root.rglob("*.py"):
        names |= set(re.findall(r'ServiceError\(\s*"([^"]+)"', path.read_text()))
    assert names, "expected to find ServiceError names"
    for name in sorted(names):
        resolve_error(api, name)


def test_unknown_error_name_fails_loudly(api: ApiModel) -> None:
    with pytest.raises(KeyError):
        resolve_error(api, "CacheClusterNotFound")  # the code, not the shape name
    with pytest.raises(KeyError):
        ServiceError("NoSuchFault", "x").resolve(api)


# -- fuzz ----------------------------------------------------------------------------------

_GARBAGE_VALUES = st.one_of(
    st.text(),
    st.text(st.characters(codec="utf-8")),
    st.integers().map(str),
    st.integers(min_value=10**18).map(lambda n: str(n) * 3),
    st.floats().map(str),
    st.sampled_from(["", "true", "false", "TRUE", "null", "2024-01-01T00:00:00Z", "-0", "1e309",
                     "Infinity", "NaN", "0x10", "+5", " 5", "=", "%", "\x00", "\ud800"]),
    st.datetimes().map(lambda d: d.isoformat()),
)


@st.composite
def _garbage_pairs(draw: st.DrawFn, api: ApiModel) -> list[tuple[str, str]]:
    operation = draw(st.sampled_from(OPERATIONS))
    op = api.operation(operation)
    assert op is not None
    known = wire_keys(op.input_shape) if op.input_shape is not None else []
    known += ["Action", "Version", "member", "entry"]
    part = st.one_of(st.sampled_from(known), st.text(max_size=8), st.integers(-3, 12).map(str))
    key = st.one_of(
        st.sampled_from(known),
        st.lists(part, min_size=1, max_size=5).map(".".join),
        st.text(),
    )
    pairs = draw(st.lists(st.tuples(key, _GARBAGE_VALUES), max_size=12))
    if draw(st.integers(0, 9)):  # mostly a valid Action, so the garbage reaches the shapes
        pairs.insert(draw(st.integers(0, len(pairs))), ("Action", operation))
    return pairs


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_parse_raises_only_service_errors(api: ApiModel, data: st.DataObject) -> None:
    pairs = data.draw(_garbage_pairs(api))
    try:
        parse(api, pairs)
    except ServiceError as err:
        resolve_error(api, err.name)  # and only ones the serializer can write


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(operation=st.sampled_from(OPERATIONS), data=st.data())
def test_mutated_valid_requests(api: ApiModel, operation: str, data: st.DataObject) -> None:
    # Start from what boto3 really sends, then damage it: values replaced by garbage, pairs
    # dropped or duplicated, indices shifted. This reaches deep into nested shapes.
    op = api.operation(operation)
    assert op is not None
    params = data.draw(input_value(op.input_shape)) if op.input_shape is not None else {}
    pairs = botocore_wire_pairs(op, params)
    for _ in range(data.draw(st.integers(1, 4))):
        if not pairs:
            break
        i = data.draw(st.integers(0, len(pairs) - 1))
        key, value = pairs[i]
        how = data.draw(st.sampled_from(["value", "drop", "dup", "index", "suffix"]))
        if how == "value":
            pairs[i] = (key, data.draw(_GARBAGE_VALUES))
        elif how == "drop":
            del pairs[i]
        elif how == "dup":
            pairs.append((key, data.draw(_GARBAGE_VALUES)))
        elif how == "index":
            pairs[i] = (re.sub(r"\.\d+", lambda m: "." + str(data.draw(st.integers(0, 5))), key), value)
        else:
            pairs[i] = (key + "." + data.draw(st.sampled_from(["1", "member", "x", ""])), value)
    try:
        parse(api, pairs)
    except ServiceError as err:
        resolve_error(api, err.name)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operation=st.sampled_from(OPERATIONS), data=st.data())
def test_valid_keys_with_garbage_values(api: ApiModel, operation: str, data: st.DataObject) -> None:
    op = api.operation(operation)
    assert op is not None
    keys = wire_keys(op.input_shape) if op.input_shape is not None else []
    if not keys:
        return
    chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=20))
    pairs = [("Action", operation)] + [(k, data.draw(_GARBAGE_VALUES)) for k in chosen]
    try:
        parse(api, pairs)
    except ServiceError as err:
        resolve_error(api, err.name)


def test_pattern_check_is_not_quadratic(api: ApiModel) -> None:
    # FilterName's pattern is `.*\S.*`; searched naively in 100 000 spaces it backtracks for
    # about a minute. The parser answers at once either way.
    started = time.perf_counter()
    err = fails(api, [("Action", "DescribeUsers"), ("Filters.member.1.Name", " " * 100_000),
                      ("Filters.member.1.Values.member.1", "x")])
    assert err.name == "InvalidParameterValueException" and "Filters.member.1.Name" in err.message
    assert time.perf_counter() - started < 1.0
