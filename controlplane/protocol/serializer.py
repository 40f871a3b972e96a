"""Query-protocol XML responses, generic over the botocore model.

`serialize_result` writes what botocore's QueryParser reads back into the same dict, and
`serialize_error` the `<ErrorResponse>` that botocore turns into a ClientError with the model's
code. For speed a writer function is compiled once per shape (cached on the ApiModel); writers
append string pieces to one list that is joined once, and only strings are escaped.

Values are plain Python keyed by botocore member names; None or absent members are omitted.
Keys the shape does not name are ignored (pass `strict=True`, meant for tests, to have them,
and values of the wrong Python type, reported as a ValueError instead).

Round-trip notes (botocore's parser decides what is representable):
- an empty list, map or structure is written as a self-closing element (`<CacheSecurityGroups/>`,
  as AWS writes it) and reads back as [] / {}; an empty *flattened* list or map has no element
  at all, so it reads back as absent;
- timestamps are written as ISO 8601 UTC with milliseconds and "Z"; naive datetimes are taken
  as UTC, ints/floats as epoch seconds, strings are passed through;
- characters XML 1.0 cannot carry (most C0 controls, lone surrogates, U+FFFE/U+FFFF) become
  U+FFFD; "\\r" is written as a character reference so the XML parser does not turn it into "\\n".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, NamedTuple, cast

from botocore.model import ListShape, MapShape, Shape, StructureShape

from controlplane.protocol.errors import ServiceError
from controlplane.protocol.model import ApiModel
from controlplane.protocol.xmltext import attr, clean, escape, int_text, scalar_text

Raw = Callable[[str], None]
Writer = Callable[[Any, list[str], Raw], None]

def _is_flattened(shape: Shape) -> bool:
    return shape.type_name in ("list", "map") and bool(shape.serialization.get("flattened"))


def _discard(_: str) -> None:
    pass


class FrozenShape(dict[str, Any]):
    """A structure value that serializes to the same XML on every call, such as the API shape of
    a stored record that has not changed since: as an item of a list, its XML is written once and
    the text reused (DescribeCacheClusters lists every cluster on every call, and these items are
    most of its serializing time). It reads as the plain dict it is everywhere else.

    By contract neither it nor anything inside it changes after it is made (like the records it
    is rendered from); a change would not show in the XML already written."""

    __slots__ = ("_xml",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._xml: tuple[Writer, str] | None = None  # (the escaping writer that wrote it, the text)

    def xml(self, writer: Writer) -> str:
        """The content as `writer` (an escaping one) writes it, memoized."""
        memo = self._xml
        if memo is not None and memo[0] is writer:
            return memo[1]
        out: list[str] = []
        writer(self, out, _discard)
        text = "".join(out)
        self._xml = (writer, text)
        return text


# -- compilation ---------------------------------------------------------------------------
#
# Every shape gets two writers. The optimistic one appends strings unescaped and also hands
# each of them to `raw`; the caller checks all of them in one scan afterwards (`_clean`), which
# costs a fraction of testing each string on its own. Only if that scan finds something to
# escape does the caller write the response again with the checked writer, which escapes
# string by string. Numbers, booleans and timestamps produce safe text in both.


def _compile(api: ApiModel, shape: Shape, checked: bool, tag: str = "") -> Writer:
    """The writer for a shape's content. `tag` is only used by flattened lists and maps, which
    write their items under the enclosing member's element name."""
    cache = api.cache("serializer")
    key = (shape.name, shape.type_name, repr(sorted(shape.serialization.items())), tag, checked)
    writer: Writer | None = cache.get(key)
    if writer is not None:
        return writer
    cell: list[Writer] = []  # a recursive shape meets itself while compiling
    cache[key] = lambda value, out, raw: cell[0](value, out, raw)
    writer = _build(api, shape, checked, tag)
    cell.append(writer)
    cache[key] = writer
    return writer


def _build(api: ApiModel, shape: Shape, checked: bool, tag: str) -> Writer:
    if shape.type_name == "structure":
        return _build_structure(api, cast(StructureShape, shape), checked)
    if shape.type_name == "list":
        return _build_list(api, cast(ListShape, shape), checked, tag)
    if shape.type_name == "map":
        return _build_map(api, cast(MapShape, shape), checked, tag)
    if shape.type_name in ("string", "character") and not checked:

        def write_string(value: Any, out: list[str], raw: Raw) -> None:
            out.append(value)
            raw(value)

        return write_string
    text = scalar_text(api, shape.type_name)

    def write_scalar(value: Any, out: list[str], raw: Raw) -> None:
        out.append(text(value))

    return write_scalar


def _member_tag(member: Shape, member_name: str) -> str:
    # As botocore's parser looks it up (BaseXMLResponseParser._member_key_name).
    if member.type_name == "list" and member.serialization.get("flattened"):
        item_name = cast(ListShape, member).member.serialization.get("name")
        if item_name is not None:
            return str(item_name)
    return str(member.serialization.get("name", member_name))


_INLINE_DEPTH = 3  # nested structures written inline, without a call, down to this depth
_CONTAINERS = ("structure", "list", "map")  # written self-closing when empty, as AWS does


def _build_structure(api: ApiModel, shape: StructureShape, checked: bool) -> Writer:
    """Generate one straight-line function per structure: this is the hot path (50 clusters of
    ~60 members each), and unrolled code skips the loop, the unpacking, the type dispatch and,
    for nested structures, the call. Names from the model enter the source only as repr()
    literals, never as code."""
    namespace: dict[str, Any] = {"_escape": escape, "_int": int_text}
    lines = ["def write(value, out, raw):", "    append = out.append"]
    _emit_members(api, shape, checked, "value", 0, "    ", (shape.name,), lines, namespace)
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<serializer for {shape.name}>", "exec"), namespace)
    return cast(Writer, namespace["write"])


def _emit_members(
    api: ApiModel,
    shape: StructureShape,
    checked: bool,
    var: str,
    depth: int,
    pad: str,
    path: tuple[str, ...],
    lines: list[str],
    namespace: dict[str, Any],
) -> None:
    """Source lines, indented by `pad`, writing the members of the structure held in `var` (own
    variables per depth, so an inlined nested structure does not clobber its parent's)."""
    get, v = f"get{depth}", f"v{depth}"
    lines.append(f"{pad}{get} = {var}.get")

    def helper(prefix: str, obj: Any) -> str:
        name = f"{prefix}{len(namespace)}"
        namespace[name] = obj
        return name

    for name, member in shape.members.items():
        tag = _member_tag(member, name)
        open_tag, close_tag, empty_tag = repr(f"<{tag}>"), repr(f"</{tag}>"), repr(f"<{tag}/>")
        lines += [f"{pad}{v} = {get}({name!r})", f"{pad}if {v} is not None:"]
        body = pad + "    "
        kind = member.type_name
        if _is_flattened(member):
            lines.append(f"{body}{helper('_w', _compile(api, member, checked, tag))}({v}, out, raw)")
        elif kind == "structure" and depth < _INLINE_DEPTH and member.name not in path:
            # An empty structure as AWS writes it (<PendingModifiedValues/>), else inline.
            lines += [f"{body}if not {v}:", f"{body}    append({empty_tag})", f"{body}else:",
                      f"{body}    append({open_tag})"]
            nested = cast(StructureShape, member)
            _emit_members(api, nested, checked, v, depth + 1, body + "    ", (*path, member.name), lines,
                          namespace)
            lines.append(f"{body}    append({close_tag})")
        elif kind in _CONTAINERS:
            writer = helper("_w", _compile(api, member, checked))
            lines += [f"{body}if {v}: append({open_tag}); {writer}({v}, out, raw); append({close_tag})",
                      f"{body}else: append({empty_tag})"]
        elif kind in ("string", "character"):
            if checked:
                lines.append(f"{body}append({open_tag}); append(_escape({v})); append({close_tag})")
            else:
                lines.append(f"{body}append({open_tag}); append({v}); append({close_tag}); raw({v})")
        elif kind == "boolean":
            true, false = repr(f"<{tag}>true</{tag}>"), repr(f"<{tag}>false</{tag}>")
            lines.append(f"{body}append({true} if {v} else {false})")
        elif kind in ("integer", "long", "short", "byte"):
            text = f"str({v}) if {v}.__class__ is int else _int({v})"
            lines.append(f"{body}append({open_tag}); append({text}); append({close_tag})")
        else:
            text_fn = helper("_t", scalar_text(api, kind))
            lines.append(f"{body}append({open_tag}); append({text_fn}({v})); append({close_tag})")


def _build_list(api: ApiModel, shape: ListShape, checked: bool, tag: str) -> Writer:
    item = shape.member
    # Flattened items repeat in place of the member, under the tag the parent resolved.
    flattened = shape.serialization.get("flattened")
    item_tag = tag if flattened else str(item.serialization.get("name", "member"))
    open_tag, close_tag = f"<{item_tag}>", f"</{item_tag}>"

    if item.type_name == "string":

        def write_strings(value: Any, out: list[str], raw: Raw) -> None:
            append = out.append
            for v in value:
                append(open_tag)
                append(escape(v) if checked else v)
                append(close_tag)
                raw(v)

        return write_strings

    write_item = _compile(api, item, checked)
    if item.type_name in _CONTAINERS:
        empty_tag = f"<{item_tag}/>"
        # A FrozenShape's text comes escaped from the checked writer, so it skips `raw`.
        escaping_item = _compile(api, item, True) if item.type_name == "structure" else None

        def write_containers(value: Any, out: list[str], raw: Raw) -> None:
            append = out.append
            for v in value:
                if not v:
                    append(empty_tag)
                elif v.__class__ is FrozenShape and escaping_item is not None:
                    append(open_tag)
                    append(v.xml(escaping_item))
                    append(close_tag)
                else:
                    append(open_tag)
                    write_item(v, out, raw)
                    append(close_tag)

        return write_containers

    def write_list(value: Any, out: list[str], raw: Raw) -> None:
        append = out.append
        for v in value:
            append(open_tag)
            write_item(v, out, raw)
            append(close_tag)

    return write_list


def _build_map(api: ApiModel, shape: MapShape, checked: bool, tag: str) -> Writer:
    flattened = bool(shape.serialization.get("flattened"))
    key_tag = str(shape.key.serialization.get("name", "key"))
    value_tag = str(shape.value.serialization.get("name", "value"))
    entry_open, entry_close = (f"<{tag}>", f"</{tag}>") if flattened else ("<entry>", "</entry>")
    key_open, key_close = f"<{key_tag}>", f"</{key_tag}>"
    value_open, value_close = f"<{value_tag}>", f"</{value_tag}>"
    value_empty = f"<{value_tag}/>" if shape.value.type_name in _CONTAINERS else None
    write_key = _compile(api, shape.key, checked)
    write_value = _compile(api, shape.value, checked)

    def write_map(value: Any, out: list[str], raw: Raw) -> None:
        append = out.append
        for k, v in value.items():
            append(entry_open)
            append(key_open)
            write_key(k, out, raw)
            append(key_close)
            if value_empty is not None and not v:
                append(value_empty)
            else:
                append(value_open)
                write_value(v, out, raw)
                append(value_close)
            append(entry_close)

    return write_map


# -- responses -----------------------------------------------------------------------------


class _Operation(NamedTuple):
    head: str  # <XResponse xmlns=..><XResult>
    fast: Writer | None  # None: the operation has no output shape
    checked: Writer | None
    middle: str  # </XResult><ResponseMetadata><RequestId>
    tail: str


def _operation(api: ApiModel, operation: str) -> _Operation:
    cache = api.cache("serializer-operations")
    compiled: _Operation | None = cache.get(operation)
    if compiled is not None:
        return compiled
    op = api.operation(operation)
    if op is None:
        raise KeyError(f"unknown operation {operation!r}")
    head = f'<{operation}Response xmlns="{attr(api.xml_namespace)}">'
    middle = "<ResponseMetadata><RequestId>"
    tail = f"</RequestId></ResponseMetadata></{operation}Response>"
    fast = checked = None
    shape = op.output_shape
    if shape is not None:
        fast, checked = _compile(api, shape, False), _compile(api, shape, True)
        wrapper = shape.serialization.get("resultWrapper")
        if wrapper:  # without one, botocore reads the members straight from the root element
            head += f"<{wrapper}>"
            middle = f"</{wrapper}>" + middle
    compiled = _Operation(head, fast, checked, middle, tail)
    cache[operation] = compiled
    return compiled


def serialize_result(
    api: ApiModel,
    operation: str,
    result: Mapping[str, Any],
    request_id: str,
    *,
    strict: bool = False,
) -> bytes:
    """The XML body of a successful response. KeyError for an operation the model lacks;
    with `strict`, ValueError for result keys or value types the output shape does not have."""
    compiled = _operation(api, operation)
    if strict:
        op = api.operation(operation)
        shape = op.output_shape if op is not None else None
        problems = check_value(shape, result, "") if shape is not None else []
        if problems:
            raise ValueError(f"{operation} result does not match the model: " + "; ".join(problems))
    out = [compiled.head]
    if compiled.fast is not None and compiled.checked is not None:
        raw: list[str] = []
        compiled.fast(result, out, raw.append)
        if not clean("".join(raw)):
            out = [compiled.head]
            compiled.checked(result, out, _discard)
    out.append(compiled.middle)
    out.append(escape(request_id))
    out.append(compiled.tail)
    return "".join(out).encode("utf-8")


def serialize_error(api: ApiModel, err: ServiceError, request_id: str) -> tuple[int, bytes]:
    """(HTTP status, body) for an error; code, status and Sender/Receiver come from the model
    or the common-errors table."""
    code, status, fault = err.resolve(api)
    body = (
        f'<ErrorResponse xmlns="{attr(api.xml_namespace)}"><Error><Type>{fault}</Type>'
        f"<Code>{escape(code)}</Code><Message>{escape(err.message)}</Message></Error>"
        f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
    )
    return status, body.encode("utf-8")


# -- strict mode ---------------------------------------------------------------------------

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "character": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "short": (int,),
    "byte": (int,),
    "double": (int, float),
    "float": (int, float),
    "timestamp": (datetime, date, int, float, str),
    "blob": (bytes, bytearray, str),
}


def check_value(shape: Shape, value: Any, path: str) -> list[str]:
    """Where a result value strays from its shape: unknown keys and wrong Python types."""
    where = path or "<result>"
    if shape.type_name == "structure":
        if not isinstance(value, Mapping):
            return [f"{where}: expected a mapping, got {type(value).__name__}"]
        members = cast(StructureShape, shape).members
        problems = [f"{path}.{k}".lstrip(".") + ": not a member" for k in value if k not in members]
        for name, v in value.items():
            if v is not None and name in members:
                problems += check_value(members[name], v, f"{path}.{name}".lstrip("."))
        return problems
    if shape.type_name == "list":
        if not isinstance(value, list | tuple):
            return [f"{where}: expected a list, got {type(value).__name__}"]
        member = cast(ListShape, shape).member
        return [p for i, v in enumerate(value) for p in check_value(member, v, f"{where}[{i}]")]
    if shape.type_name == "map":
        if not isinstance(value, Mapping):
            return [f"{where}: expected a mapping, got {type(value).__name__}"]
        map_shape = cast(MapShape, shape)
        problems = []
        for k, v in value.items():
            problems += check_value(map_shape.key, k, f"{where}<key>")
            problems += check_value(map_shape.value, v, f"{where}[{k!r}]")
        return problems
    expected = _PY_TYPES.get(shape.type_name)
    wrong_bool = isinstance(value, bool) and shape.type_name != "boolean"
    if expected is not None and (not isinstance(value, expected) or wrong_bool):
        return [f"{where}: expected {shape.type_name}, got {type(value).__name__}"]
    return []
