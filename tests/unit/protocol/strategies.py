"""Hypothesis strategies derived from botocore shapes, for codec round trips and fuzzing.

`input_value(shape)` draws parameters a boto3 caller may send (they satisfy the model's
required/enum/min/max/pattern constraints, so a correct server must accept them);
`output_value(shape)` draws results a handler may return. `wire_keys(shape)` lists Query keys
(`Tags.Tag.1.Key`, ...) an operation understands, as material for fuzzing.
Reusable by any test: nothing here knows ElastiCache.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

import botocore.serialize
from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape
from hypothesis import strategies as st

MAX_ITEMS = 3  # per list/map: enough to show ordering and indices, small enough to be fast
MAX_DEPTH = 6  # recursive shapes stop here (optional members are dropped beyond it)

# Any character a form body can carry (utf-8 cannot encode lone surrogates).
_FORM_CHARS = st.characters(codec="utf-8")
# Characters XML 1.0 can carry, with the ones that need escaping drawn more often.
_XML_CHARS = st.one_of(
    st.sampled_from("&<>\"'\r\n\t ]]>"),
    st.characters(
        codec="utf-8",
        blacklist_characters="\ufffe\uffff",
        blacklist_categories=("Cs",),
    ).filter(lambda c: c >= " " or c in "\t\n\r"),
)
_INT_RANGES = {
    "integer": (-(2**31), 2**31 - 1),
    "long": (-(2**63), 2**63 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-(2**7), 2**7 - 1),
}
# Whole milliseconds: the wire format of responses has no finer precision.
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def _string(shape: Shape, chars: st.SearchStrategy[str], *, constrained: bool) -> st.SearchStrategy[str]:
    meta = shape.metadata
    if meta.get("enum"):
        return st.sampled_from(list(meta["enum"]))
    if not constrained:
        return st.text(chars, max_size=24)
    low, high = int(meta.get("min", 0)), int(meta.get("max", 24))
    high = max(low, min(high, low + 24))
    if "pattern" in meta:
        text = st.from_regex(meta["pattern"], fullmatch=True, alphabet=chars)
        return text.filter(lambda s: low <= len(s) <= high)
    return st.text(chars, min_size=low, max_size=high)


def _number_bounds(shape: Shape) -> tuple[int, int]:
    low, high = _INT_RANGES.get(shape.type_name, _INT_RANGES["long"])
    return max(low, int(shape.metadata.get("min", low))), min(high, int(shape.metadata.get("max", high)))


def _scalar(shape: Shape, *, for_input: bool) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind in ("string", "character"):
        return _string(shape, _FORM_CHARS if for_input else _XML_CHARS, constrained=for_input)
    if kind in _INT_RANGES:
        low, high = _number_bounds(shape)
        return st.integers(low, high)
    if kind in ("double", "float"):
        return st.floats(allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return timestamps
    if kind == "blob":
        return st.binary(max_size=16)
    raise NotImplementedError(f"no strategy for shape type {kind}")


_NESTED = ("structure", "list", "map")


def _value(shape: Shape, for_input: bool, path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    """`path`: the structure shapes enclosing this one, to cut recursive shapes short."""
    kind = shape.type_name
    if kind == "structure":
        return _structure(cast(StructureShape, shape), for_input, path)
    if kind == "list":
        lst = cast(ListShape, shape)
        low = int(shape.metadata.get("min", 0))
        if not for_input and shape.serialization.get("flattened"):
            low = max(low, 1)  # an empty flattened list has no XML element: it reads back absent
        high = max(low, min(int(shape.metadata.get("max", MAX_ITEMS)), MAX_ITEMS))
        return st.lists(_value(lst.member, for_input, path), min_size=low, max_size=high)
    if kind == "map":
        mp = cast(MapShape, shape)
        # An empty map sends no key at all in a request, so inputs always have an entry;
        # an empty flattened map has no XML element, so such outputs do too.
        low = 1 if for_input or shape.serialization.get("flattened") else 0
        return st.dictionaries(
            _value(mp.key, for_input, path),
            _value(mp.value, for_input, path),
            min_size=low,
            max_size=MAX_ITEMS,
        )
    return _scalar(shape, for_input=for_input)


def _structure(shape: StructureShape, for_input: bool, path: tuple[str, ...]) -> st.SearchStrategy[Any]:
    required = set(shape.required_members) if for_input else set()
    inner = (*path, shape.name)
    # A structure met again inside itself (a recursive shape) only gets its scalar members,
    # and only its required nested ones: that ends the recursion after one repetition.
    leaf = shape.name in path or len(path) >= MAX_DEPTH
    fixed, optional = {}, {}
    for name, member in shape.members.items():
        if name in required:
            fixed[name] = _value(member, for_input, inner)
        elif not (leaf and member.type_name in _NESTED):
            optional[name] = _value(member, for_input, inner)
    drawn = st.fixed_dictionaries(fixed, optional=optional)
    if for_input and path and not fixed and optional:
        # An empty structure sends no key at all, so a nested one would vanish on the wire.
        drawn = drawn.filter(bool)
    return drawn


def input_value(shape: Shape) -> st.SearchStrategy[Any]:
    """Values a boto3 caller may pass for `shape` that satisfy the model's constraints."""
    return _value(shape, True, ())


def output_value(shape: Shape) -> st.SearchStrategy[Any]:
    """Values a handler may return for `shape` (any XML-representable text)."""
    return _value(shape, False, ())


def wire_keys(shape: Shape, prefix: str = "", depth: int = 0) -> list[str]:
    """Query keys for a shape's members as botocore would write them, with indices 1 and 2."""
    if depth > MAX_DEPTH:
        return []
    kind = shape.type_name
    if kind == "structure":
        keys = []
        for name, member in cast(StructureShape, shape).members.items():
            wire = str(member.serialization.get("name", name))
            keys += wire_keys(member, f"{prefix}.{wire}" if prefix else wire, depth + 1)
        return keys
    if kind == "list":
        lst = cast(ListShape, shape)
        item = "." + str(lst.member.serialization.get("name", "member"))
        if shape.serialization.get("flattened"):
            item = ""
        keys = [prefix]
        for i in (1, 2):
            keys += wire_keys(lst.member, f"{prefix}{item}.{i}", depth + 1)
        return keys
    if kind == "map":
        mp = cast(MapShape, shape)
        entry = "" if shape.serialization.get("flattened") else ".entry"
        key_name = mp.key.serialization.get("name", "key")
        value_name = mp.value.serialization.get("name", "value")
        keys = []
        for i in (1, 2):
            keys += wire_keys(mp.key, f"{prefix}{entry}.{i}.{key_name}", depth + 1)
            keys += wire_keys(mp.value, f"{prefix}{entry}.{i}.{value_name}", depth + 1)
        return keys
    return [prefix]


_BOTOCORE_SERIALIZER = botocore.serialize.create_serializer("query")  # with botocore's validation


def botocore_wire_pairs(operation: OperationModel, params: dict[str, Any]) -> list[tuple[str, str]]:
    """What a boto3 client puts on the wire for these parameters, decoded as the server decodes
    a form body."""
    request = _BOTOCORE_SERIALIZER.serialize_to_request(params, operation)
    return parse_qsl(urlencode(request["body"]), keep_blank_values=True)
