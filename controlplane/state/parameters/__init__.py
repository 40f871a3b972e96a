"""AWS's parameter catalogues per parameter-group family, kept as data (redis.json, memcached.json,
written from AWS's "Engine specific parameters" pages: each family is the one it comes from with
the parameters added, changed, renamed and removed there), and how a parameter reaches a node:
a redis config directive (CONFIG SET when its change is `immediate`), or a memcached command-line
option at start (memcached.py)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

IMMEDIATE = "immediate"
REBOOT = "requires-reboot"
_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)-(-?\d+(?:\.\d+)?)?$")


@dataclass(frozen=True)
class Param:
    name: str
    default: str
    data_type: str  # "string" | "integer" | "boolean" | "float"
    allowed: str  # AWS's AllowedValues: "yes,no", "0-", "1-75", "" (anything)
    modifiable: bool
    change_type: str  # IMMEDIATE | REBOOT
    minimum_version: str
    description: str
    directive: str | None  # what the engine calls it (None: an AWS-side setting, no engine effect)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def _param(row: dict[str, Any], not_engine: set[str]) -> Param:
    name = str(row["name"])
    return Param(name, str(row["default"]), str(row["type"]), str(row["allowed"]), bool(row["modifiable"]),
                 str(row["change"]), str(row["minimum"]), str(row["description"]),
                 None if name in not_engine else name)


def _family(entry: dict[str, Any], base: dict[str, Param], not_engine: set[str]) -> dict[str, Param]:
    out = dict(base)
    for old, new in dict(entry.get("rename", {})).items():
        param = out.pop(old)
        out[new] = replace(param, name=new, minimum_version=str(entry["rename_minimum"]),
                           description=param.description.replace("slave", "replica"),
                           directive=None if new in not_engine else new)
    for name in entry.get("remove", []):
        del out[name]
    fields = {"default": "default", "modifiable": "modifiable", "allowed": "allowed"}
    for name, changes in dict(entry.get("change", {})).items():
        out[name] = replace(out[name], **{fields[k]: v for k, v in changes.items()})
    out.update({p.name: p for p in (_param(row, not_engine) for row in entry.get("add", []))})
    floor = entry.get("minimum_floor")
    if floor:
        out = {n: p if _version_key(p.minimum_version) >= _version_key(floor) else replace(p, minimum_version=floor)
               for n, p in out.items()}
    return dict(sorted(out.items()))


def _load() -> dict[str, dict[str, Param]]:
    out: dict[str, dict[str, Param]] = {}
    for data_file in ("redis.json", "memcached.json"):
        data = json.loads(resources.files(__package__).joinpath(data_file).read_text())
        not_engine = set(data["not_engine"])
        for entry in data["families"]:
            out[entry["family"]] = _family(entry, out[entry["from"]] if "from" in entry else {}, not_engine)
    return out


FAMILIES: dict[str, dict[str, Param]] = _load()


def catalogue(family: str) -> dict[str, Param]:
    """The family's parameters by name, in AWS's order (alphabetical); KeyError for no family."""
    return FAMILIES[family]


def engine_of(family: str) -> str:
    return "memcached" if family.startswith("memcached") else ("valkey" if family.startswith("valkey") else "redis")


def _fits(number: float, item: str) -> bool:
    """Whether a number is AWS's allowed item: a value ("-2"), or a range ("1-75", "20-": no top)."""
    found = _RANGE.match(item)
    if found is None:
        try:
            return number == float(item)
        except ValueError:
            return False
    low, high = found.group(1), found.group(2)
    return float(low) <= number and (high is None or number <= float(high))


def check_value(param: Param, value: str) -> str | None:
    """Why `value` is not allowed for `param` (None: it is)."""
    items = [i for i in param.allowed.split(",") if i]
    if param.data_type in ("integer", "float") or (param.data_type == "boolean" and param.allowed == "0,1"):
        try:
            number = float(value) if param.data_type == "float" else int(value)
        except ValueError:
            return f"must be {'a number' if param.data_type == 'float' else 'an integer'}"
        if items and not any(_fits(number, item) for item in items):
            return f"must be within the allowed values {param.allowed}"
        return None
    if items and value not in items:
        return f"must be one of: {', '.join(items)}"
    if param.name == "notify-keyspace-events" and any(c not in "KEg$lshzxeAtmdn" for c in value):
        return "may only contain the event classes K E g $ l s h z x e A t m d n"
    return None
