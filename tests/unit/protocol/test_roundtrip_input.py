"""Every operation's input: botocore's own QuerySerializer writes it, our parser reads it back."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import parse
from tests.unit.protocol.strategies import botocore_wire_pairs, input_value

OPERATIONS = ApiModel().operation_names

ROUNDTRIP = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def test_every_operation_is_covered(api: ApiModel) -> None:
    assert len(OPERATIONS) >= 75
    assert set(OPERATIONS) == set(api.service.operation_names)


@pytest.mark.parametrize("operation", OPERATIONS)
@ROUNDTRIP
@given(data=st.data())
def test_input_roundtrip(api: ApiModel, operation: str, data: st.DataObject) -> None:
    op = api.operation(operation)
    assert op is not None
    params: dict[str, Any] = {}
    if op.input_shape is not None:
        params = data.draw(input_value(op.input_shape), label="params")
    parsed = parse(api, botocore_wire_pairs(op, params))
    assert parsed.operation == operation
    assert parsed.params == params
