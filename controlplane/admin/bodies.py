"""Request bodies of the JSON API: pydantic models made from the generated request types
(controlplane.model.messages), so a body carries AWS's member names and types and nothing else.

A model is strict (JSON's own types: "2" is not a number) and forbids members the operation does
not have, so a misspelt member is a 400, not silently ignored. What passes is handed to the
handler as its typed message, where the service layer's rules apply as for the Query API."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from types import GenericAlias
from typing import Annotated, Any, TypeVar, cast, get_args, get_origin, get_type_hints

from fastapi import Body
from pydantic import BaseModel, ConfigDict, Field, create_model
from typing_extensions import is_typeddict

_STRICT = ConfigDict(extra="forbid", strict=True)
F = TypeVar("F", bound=Callable[..., Any])


class BodyModels:
    """Models made so far, by name: the nested shapes (Tag, NodeGroupConfiguration ...) are made
    once and shared, so the OpenAPI document names each once."""

    def __init__(self) -> None:
        self._made: dict[str, type[BaseModel]] = {}

    def of(self, message: type[Any], name: str, *, without: Collection[str] = (),
           doc: str | None = None) -> type[BaseModel]:
        """The model of `message` (a generated TypedDict) named `name`, less the members in
        `without` (those the route's path gives)."""
        made = self._made.get(name)
        if made is not None:
            return made
        hints = get_type_hints(message)  # NotRequired[...] unwrapped; __required_keys__ tells which
        required: frozenset[str] = message.__required_keys__
        fields: dict[str, Any] = {}
        for member, hint in hints.items():
            if member in without:
                continue
            annotation = self._convert(hint)
            # Optional members have no default in the body: absent means "not given" to the handler.
            fields[member] = (annotation, ...) if member in required else (annotation, Field(default=None))
        model = cast(type[BaseModel], create_model(name, __config__=_STRICT, __doc__=doc or message.__doc__,
                                                   **fields))
        self._made[name] = model
        return model

    def _convert(self, hint: Any) -> Any:
        if is_typeddict(hint):
            return self.of(hint, f"{hint.__name__}Body")
        origin = get_origin(hint)
        if origin in (list, dict):  # list[Tag] -> list[TagBody]
            return GenericAlias(origin, tuple(self._convert(arg) for arg in get_args(hint)))
        return hint


def message(body: BaseModel | None, **path: Any) -> Mapping[str, Any]:
    """The handler's typed message: the members the body gave (nested ones too), plus the path's."""
    given = body.model_dump(exclude_unset=True) if body is not None else {}
    return {**given, **path}


def takes(model: type[BaseModel], *, optional: bool = False) -> Callable[[F], F]:
    """Make the endpoint's `body` parameter (declared as BaseModel) the JSON body of `model`,
    a model made at run time that an annotation cannot name."""

    def mark(endpoint: F) -> F:
        signature = inspect.signature(endpoint, eval_str=True)
        body = Annotated[model | None, Body()] if optional else Annotated[model, Body()]
        parameters = [p.replace(annotation=body, default=None if optional else p.default) if p.name == "body" else p
                      for p in signature.parameters.values()]
        endpoint.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return endpoint

    return mark
