"""Query-protocol request parser, generic over the botocore model.

Reads the flat `Name.Sub.member.1=value` pairs exactly as botocore's QuerySerializer writes
them and rebuilds the parameter dict a boto3 caller passed, validating it against the model.
Any input whatsoever yields a `ParsedRequest` or a `ServiceError`, never another exception.

How it works: the pairs become a trie on the '.'-separated key parts, then a parse function
compiled once per shape (cached on the ApiModel) walks the trie alongside the shape. Keys the
shape does not name are never visited, which is how unknown parameters are ignored (as AWS does).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from botocore.model import ListShape, MapShape, Shape, StructureShape

from controlplane.protocol.errors import ServiceError
from controlplane.protocol.model import ApiModel

_INVALID = "InvalidParameterValueException"


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    operation: str
    params: dict[str, Any]


class _Node:
    """One key part of the request: its own value (if the key ended here) and its children."""

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value: str | None = None
        self.children: dict[str, _Node] = {}


class _Absent:
    """Returned by a parse function when the node carries nothing for its shape."""


_ABSENT = _Absent()
ParseFn = Callable[[_Node, str], Any]

# ASCII only on purpose: int() and float() accept other scripts' digits, the wire should not.
_INDEX_RE = re.compile(r"[1-9][0-9]{0,8}")  # more than 9 digits cannot be contiguous anyway
_INT_RE = re.compile(r"[+-]?[0-9]{1,40}")
_FLOAT_RE = re.compile(
    r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Infinity|NaN"
)
_EPOCH_RE = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,9})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TYPE_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def _show(value: str) -> str:
    """The offending value for a message, bounded: the input may be anything."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _invalid(message: str) -> ServiceError:
    return ServiceError(_INVALID, message)


def _build_trie(pairs: Sequence[tuple[str, str]]) -> _Node:
    root = _Node()
    for key, value in pairs:
        node = root
        for part in key.split("."):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        if node.value is not None:
            # botocore never repeats a key. Taking either copy would let two readers of one
            # request (the router choosing a read-only fast path, the handler) disagree.
            raise _invalid(f"The parameter {_show(key)[1:-1]} is given more than once")
        node.value = value
    return root


def parse(api: ApiModel, pairs: Sequence[tuple[str, str]]) -> ParsedRequest:
    """Parse decoded form pairs (`parse_qsl(body, keep_blank_values=True)`) into an operation
    name and the parameters a boto3 caller would have passed."""
    root = _build_trie(pairs)
    action_node = root.children.get("Action")
    action = action_node.value if action_node is not None else None
    if not action:
        raise ServiceError("MissingAction", "The request must contain the parameter Action")
    op = api.operation(action)
    if op is None:
        version_node = root.children.get("Version")
        version = version_node.value if version_node is not None and version_node.value else None
        raise ServiceError(
            "InvalidAction",
            f"Could not find operation {_show(action)[1:-1]} for version {version or api.api_version}",
        )
    shape = op.input_shape
    if shape is None:
        return ParsedRequest(op.name, {})
    # The top-level structure is the request itself: parse it even if no member is present.
    params = _compile(api, shape)(root, "")
    return ParsedRequest(op.name, params if isinstance(params, dict) else {})


def check_version(api: ApiModel, operation: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Only the model's API version (2015-02-02, what every SDK sends) is served. AWS's Query
    services answer another version, or none, with InvalidAction "Could not find operation X for
    version Y" (none: NO_VERSION_SPECIFIED), so a request is never served as a version it is not."""
    versions = [v for k, v in pairs if k == "Version"]
    version = versions[-1] if versions else ""
    if version != api.api_version:
        shown = version[:64] if version else "NO_VERSION_SPECIFIED"
        raise ServiceError("InvalidAction", f"Could not find operation {operation} for version {shown}")


# -- compilation ---------------------------------------------------------------------------


def _shape_key(shape: Shape) -> tuple[str, str, str]:
    # A member reference may add serialization traits to a shape, so they are part of the key
    # (as text: a trait value may be a dict).
    return (shape.name, shape.type_name, repr(sorted(shape.serialization.items())))


def _compile(api: ApiModel, shape: Shape) -> ParseFn:
    cache = api.cache("parser")
    key = _shape_key(shape)
    fn: ParseFn | None = cache.get(key)
    if fn is not None:
        return fn
    # A recursive shape meets itself while being compiled: hand out a trampoline meanwhile.
    cell: list[ParseFn] = []
    cache[key] = lambda node, path: cell[0](node, path)
    fn = _build(api, shape)
    cell.append(fn)
    cache[key] = fn
    return fn


def _build(api: ApiModel, shape: Shape) -> ParseFn:
    kind = shape.type_name
    if kind == "structure":
        return _build_structure(api, cast(StructureShape, shape))
    if kind == "list":
        return _build_list(api, cast(ListShape, shape))
    if kind == "map":
        return _build_map(api, cast(MapShape, shape))
    convert = _scalar_converter(shape)

    def parse_scalar(node: _Node, path: str) -> Any:
        if node.value is None:
            return _ABSENT
        return convert(node.value, path)

    return parse_scalar


def _wire_name(member: Shape, member_name: str) -> str:
    return str(member.serialization.get("name", member_name))


def _build_structure(api: ApiModel, shape: StructureShape) -> ParseFn:
    required = set(shape.required_members)
    # (member name, wire name, wire name of an empty flattened list, parse fn, required)
    members: list[tuple[str, str, str | None, ParseFn, bool]] = []
    for name, member in shape.members.items():
        wire = _wire_name(member, name)
        empty_wire: str | None = None
        if member.type_name == "list" and member.serialization.get("flattened"):
            item_name = cast(ListShape, member).member.serialization.get("name")
            if item_name:
                # botocore writes named flattened items as siblings (`Item.1`) in place of the
                # member's own name, but an empty list as `Member=`.
                wire, empty_wire = str(item_name), wire
        members.append((name, wire, empty_wire, _compile(api, member), name in required))

    def parse_structure(node: _Node, path: str) -> Any:
        children = node.children
        out: dict[str, Any] = {}
        for name, wire, empty_wire, fn, is_required in members:
            child = children.get(wire)
            value: Any = _ABSENT
            if child is not None:
                value = fn(child, f"{path}.{wire}" if path else wire)
            elif empty_wire is not None:
                alt = children.get(empty_wire)
                if alt is not None and alt.value == "":
                    value = []
            if value is not _ABSENT:
                out[name] = value
            elif is_required:
                full = f"{path}.{wire}" if path else wire
                raise ServiceError("MissingParameter", f"The request must contain the parameter {full}")
        return out

    return parse_structure


def _indexed(node: _Node, path: str) -> list[tuple[str, _Node]]:
    """The `.1`, `.2`, ... children of a node in order; a gap is an error, not a crash."""
    indexed = []
    for key, child in node.children.items():
        if not (key.isascii() and key.isdigit()):
            continue  # not an index: an unknown parameter, ignored
        if _INDEX_RE.fullmatch(key) is None:  # 0, 007, or more elements than can exist
            raise _invalid(f"Parameter {path}.{_show(key)[1:-1]} has an invalid index: indices count from 1")
        indexed.append((key, child))
    if not indexed:
        return []
    indexed.sort(key=lambda item: int(item[0]))
    for expected, (key, _) in enumerate(indexed, 1):
        if int(key) != expected:
            raise _invalid(
                f"Parameter {path} is not a contiguous list: element {path}.{expected} is missing"
            )
    return [(f"{path}.{key}", child) for key, child in indexed]


def _check_count(shape: Shape, count: int, path: str) -> None:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if low is not None and count < low:
        raise _invalid(f"Parameter {path} must have at least {low} member(s), got {count}")
    if high is not None and count > high:
        raise _invalid(f"Parameter {path} must have at most {high} member(s), got {count}")


def _build_list(api: ApiModel, shape: ListShape) -> ParseFn:
    flattened = bool(shape.serialization.get("flattened"))
    item_wire = str(shape.member.serialization.get("name", "member"))
    parse_item = _compile(api, shape.member)

    def parse_list(node: _Node, path: str) -> Any:
        items_node: _Node | None = node if flattened else node.children.get(item_wire)
        items_path = path if flattened else f"{path}.{item_wire}"
        entries = _indexed(items_node, items_path) if items_node is not None else []
        if not entries:
            if node.value == "":  # botocore's way of sending an empty list
                _check_count(shape, 0, path)
                return []
            if node.value is not None:
                raise _invalid(f"Parameter {path} must be a list ({items_path}.N), got {_show(node.value)}")
            return _ABSENT
        out = []
        for item_path, child in entries:
            value = parse_item(child, item_path)
            if value is _ABSENT:
                raise _invalid(f"Parameter {item_path} has no value")
            out.append(value)
        _check_count(shape, len(out), path)
        return out

    return parse_list


def _build_map(api: ApiModel, shape: MapShape) -> ParseFn:
    flattened = bool(shape.serialization.get("flattened"))
    key_wire = str(shape.key.serialization.get("name", "key"))
    value_wire = str(shape.value.serialization.get("name", "value"))
    parse_key = _compile(api, shape.key)
    parse_value = _compile(api, shape.value)

    def parse_map(node: _Node, path: str) -> Any:
        entries_node = node if flattened else node.children.get("entry")
        entries_path = path if flattened else f"{path}.entry"
        entries = _indexed(entries_node, entries_path) if entries_node is not None else []
        if not entries:
            return _ABSENT
        out: dict[Any, Any] = {}
        for entry_path, entry in entries:
            key_node = entry.children.get(key_wire)
            value_node = entry.children.get(value_wire)
            key: Any = _ABSENT
            value: Any = _ABSENT
            if key_node is not None:
                key = parse_key(key_node, f"{entry_path}.{key_wire}")
            if value_node is not None:
                value = parse_value(value_node, f"{entry_path}.{value_wire}")
            if key is _ABSENT or value is _ABSENT:
                raise _invalid(f"Map entry {entry_path} needs both {key_wire} and {value_wire}")
            out[key] = value
        _check_count(shape, len(out), path)
        return out

    return parse_map


# -- scalars -------------------------------------------------------------------------------

Converter = Callable[[str, str], Any]


def _scalar_converter(shape: Shape) -> Converter:
    kind = shape.type_name
    if kind in ("string", "character"):
        return _string_converter(shape)
    if kind in ("integer", "long", "short", "byte"):
        return _integer_converter(shape)
    if kind in ("double", "float"):
        return _float_converter(shape)
    if kind == "boolean":
        return _parse_boolean
    if kind == "timestamp":
        return _parse_timestamp
    if kind == "blob":
        return _parse_blob
    return lambda text, path: text  # a type this codec does not know: pass the text through


def _string_converter(shape: Shape) -> Converter:
    meta = shape.metadata
    enum = frozenset(meta.get("enum", ()))
    enum_text = ", ".join(meta.get("enum", ()))
    low: int | None = meta.get("min")
    high: int | None = meta.get("max")
    pattern: re.Pattern[str] | None = None
    if "pattern" in meta:
        try:
            pattern = re.compile(_unanchored(meta["pattern"]))
        except re.error:  # an ECMA-only construct Python cannot compile: skip that check
            pattern = None

    def convert(text: str, path: str) -> str:
        if enum and text not in enum:
            raise _invalid(f"Invalid value {_show(text)} for parameter {path}: must be one of {enum_text}")
        if low is not None and len(text) < low:
            raise _invalid(f"Parameter {path} must be at least {low} character(s) long")
        if high is not None and len(text) > high:
            raise _invalid(f"Parameter {path} must be at most {high} character(s) long")
        if pattern is not None and pattern.search(text) is None:
            raise _invalid(
                f"Invalid value {_show(text)} for parameter {path}: must match {meta['pattern']}"
            )
        return text

    return convert


def _unanchored(pattern: str) -> str:
    """Model patterns are not implicitly anchored (Smithy @pattern), so they are checked with
    search(). A leading or trailing `.*` then changes nothing but the time: searching `.*\\S.*`
    in 30 000 spaces backtracks quadratically (seconds), searching `\\S` does not."""
    if pattern.startswith(".*") and not pattern.startswith(".*?"):
        pattern = pattern[2:]
    if pattern.endswith(".*") and not pattern.endswith("\\.*"):
        pattern = pattern[:-2]
    return pattern


def _integer_converter(shape: Shape) -> Converter:
    type_low, type_high = _TYPE_RANGES.get(shape.type_name, _TYPE_RANGES["long"])
    low = max(type_low, shape.metadata.get("min", type_low))
    high = min(type_high, shape.metadata.get("max", type_high))

    def convert(text: str, path: str) -> int:
        if _INT_RE.fullmatch(text) is None:
            raise _invalid(f"Invalid value {_show(text)} for parameter {path}: not an integer")
        value = int(text)
        if not low <= value <= high:
            raise _invalid(f"Value {value} for parameter {path} is out of range [{low}, {high}]")
        return value

    return convert


def _float_converter(shape: Shape) -> Converter:
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")

    def convert(text: str, path: str) -> float:
        if _FLOAT_RE.fullmatch(text) is None:
            raise _invalid(f"Invalid value {_show(text)} for parameter {path}: not a number")
        value = float(text)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _invalid(f"Value {text} for parameter {path} is out of range")
        return value

    return convert


def _parse_boolean(text: str, path: str) -> bool:
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise _invalid(f"Invalid value {_show(text)} for parameter {path}: must be true or false")


def _parse_timestamp(text: str, path: str) -> datetime:
    """ISO 8601 (with or without fraction, 'Z' or offset; naive means UTC) or epoch seconds,
    always returned timezone-aware in UTC."""
    try:
        if _EPOCH_RE.fullmatch(text):
            seconds = Decimal(text)
            whole = int(seconds)
            micros = int((seconds - whole) * 1_000_000)
            return _EPOCH + timedelta(seconds=whole, microseconds=micros)
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError, InvalidOperation):
        pass
    raise _invalid(
        f"Invalid value {_show(text)} for parameter {path}: not an ISO 8601 timestamp or epoch seconds"
    )


def _parse_blob(text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise _invalid(f"Invalid value for parameter {path}: not base64") from None
