"""The codec on a small made-up Query service with what the ElastiCache model lacks: maps (plain,
flattened, renamed key/value), flattened lists (with and without a member name), blobs, longs,
floats, renamed members and a recursive structure. Same round trips through botocore."""

from __future__ import annotations

from typing import Any

import botocore.parsers
import pytest
from botocore.model import ServiceModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.protocol.errors import ServiceError
from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import parse
from controlplane.protocol.serializer import serialize_error, serialize_result
from tests.unit.protocol.strategies import botocore_wire_pairs, input_value, output_value

_MEMBERS = {
    "Str": {"shape": "Str"},
    "Renamed": {"shape": "Str", "locationName": "OtherName"},
    "Long": {"shape": "Long"},
    "Int": {"shape": "BoundedInt"},
    "Float": {"shape": "Float"},
    "Double": {"shape": "Double"},
    "Blob": {"shape": "Blob"},
    "When": {"shape": "When"},
    "Flag": {"shape": "Flag"},
    "Map": {"shape": "StrMap"},
    "NamedMap": {"shape": "NamedMap"},
    "FlatMap": {"shape": "FlatMap"},
    "List": {"shape": "StrList"},
    "NamedList": {"shape": "NamedList"},
    "FlatList": {"shape": "FlatList"},
    "FlatNamedList": {"shape": "FlatNamedList"},
    "Tree": {"shape": "Tree"},
}

SYNTHETIC: dict[str, Any] = {
    "version": "2.0",
    "metadata": {
        "apiVersion": "2020-01-01",
        "endpointPrefix": "synthetic",
        "protocol": "query",
        "serviceId": "Synthetic",
        "signatureVersion": "v4",
        "uid": "synthetic-2020-01-01",
        "xmlNamespace": "http://synthetic.example/doc/2020-01-01/",
    },
    "operations": {
        "Echo": {
            "name": "Echo",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "Everything"},
            "output": {"shape": "Everything", "resultWrapper": "EchoResult"},
            "errors": [{"shape": "Boom"}],
        },
        "Unwrapped": {
            "name": "Unwrapped",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "Tree"},
            "output": {"shape": "Tree"},  # no resultWrapper: members sit in the root element
        },
    },
    "shapes": {
        "Everything": {"type": "structure", "required": ["Str"], "members": _MEMBERS},
        "Str": {"type": "string"},
        "Long": {"type": "long"},
        "BoundedInt": {"type": "integer", "min": -5, "max": 500},
        "Float": {"type": "float"},
        "Double": {"type": "double"},
        "Blob": {"type": "blob"},
        "When": {"type": "timestamp"},
        "Flag": {"type": "boolean"},
        "StrMap": {"type": "map", "key": {"shape": "Str"}, "value": {"shape": "Str"}},
        "NamedMap": {
            "type": "map",
            "key": {"shape": "Str", "locationName": "Name"},
            "value": {"shape": "Tree", "locationName": "Node"},
        },
        "FlatMap": {"type": "map", "key": {"shape": "Str"}, "value": {"shape": "Long"}, "flattened": True},
        "StrList": {"type": "list", "member": {"shape": "Str"}},
        "NamedList": {"type": "list", "member": {"shape": "Tree", "locationName": "Item"}},
        "FlatList": {"type": "list", "member": {"shape": "Str"}, "flattened": True},
        "FlatNamedList": {
            "type": "list",
            "member": {"shape": "Flag", "locationName": "FlagItem"},
            "flattened": True,
        },
        "Tree": {
            "type": "structure",
            "members": {"Label": {"shape": "Str"}, "Children": {"shape": "TreeList"}},
        },
        "TreeList": {"type": "list", "member": {"shape": "Tree"}},
        "Boom": {
            "type": "structure",
            "members": {"message": {"shape": "Str"}},
            "error": {"code": "Boom.Code", "httpStatusCode": 409, "senderFault": False},
            "exception": True,
        },
    },
}

PARSER = botocore.parsers.create_parser("query")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def synthetic() -> ApiModel:
    return ApiModel(ServiceModel(SYNTHETIC, service_name="synthetic"))


@pytest.mark.parametrize("operation", ["Echo", "Unwrapped"])
@SETTINGS
@given(data=st.data())
def test_synthetic_input_roundtrip(synthetic: ApiModel, operation: str, data: st.DataObject) -> None:
    op = synthetic.operation(operation)
    assert op is not None and op.input_shape is not None
    params = data.draw(input_value(op.input_shape))
    assert parse(synthetic, botocore_wire_pairs(op, params)).params == params


@pytest.mark.parametrize("operation", ["Echo", "Unwrapped"])
@SETTINGS
@given(data=st.data())
def test_synthetic_output_roundtrip(synthetic: ApiModel, operation: str, data: st.DataObject) -> None:
    op = synthetic.operation(operation)
    assert op is not None and op.output_shape is not None
    result = data.draw(output_value(op.output_shape))
    body = serialize_result(synthetic, operation, result, "r", strict=True)
    parsed = PARSER.parse({"body": body, "headers": {}, "status_code": 200}, op.output_shape)
    parsed.pop("ResponseMetadata", None)
    assert parsed == result


def test_synthetic_wire_names(synthetic: ApiModel) -> None:
    pairs = [
        ("Action", "Echo"), ("Str", "s"), ("OtherName", "renamed"),
        ("Map.entry.1.key", "a"), ("Map.entry.1.value", "1"),
        ("NamedMap.entry.1.Name", "n"), ("NamedMap.entry.1.Node.Label", "l"),
        ("FlatMap.1.key", "k"), ("FlatMap.1.value", "9"),
        ("FlatList.1", "x"), ("FlatList.2", "y"), ("FlagItem.1", "true"),
        ("NamedList.Item.1.Children.member.1.Label", "leaf"),
        ("Blob", "aGk="), ("Long", "9223372036854775807"),
    ]
    assert parse(synthetic, pairs).params == {
        "Str": "s", "Renamed": "renamed", "Map": {"a": "1"}, "NamedMap": {"n": {"Label": "l"}},
        "FlatMap": {"k": 9}, "FlatList": ["x", "y"], "FlatNamedList": [True],
        "NamedList": [{"Children": [{"Label": "leaf"}]}], "Blob": b"hi", "Long": 2**63 - 1,
    }


@pytest.mark.parametrize(
    ("pair", "needle"),
    [
        (("Int", "501"), "out of range"),
        (("Long", "9223372036854775808"), "out of range"),
        (("Blob", "not base64!"), "base64"),
        (("Map.entry.1.key", "k"), "needs both"),
        (("Float", "1,5"), "not a number"),
    ],
)
def test_synthetic_bad_values(synthetic: ApiModel, pair: tuple[str, str], needle: str) -> None:
    with pytest.raises(ServiceError) as caught:
        parse(synthetic, [("Action", "Echo"), ("Str", "s"), pair])
    assert caught.value.name == "InvalidParameterValueException"
    assert needle in caught.value.message


def test_synthetic_error(synthetic: ApiModel) -> None:
    # The synthetic model has no InvalidParameterValueException shape: resolving it must fail
    # loudly, while the model's own error resolves with its code and Receiver type.
    status, body = serialize_error(synthetic, ServiceError("Boom", "b"), "r")
    assert status == 409
    op = synthetic.operation("Echo")
    assert op is not None
    parsed = PARSER.parse({"body": body, "headers": {}, "status_code": status}, op.output_shape)
    assert parsed["Error"] == {"Type": "Receiver", "Code": "Boom.Code", "Message": "b"}
