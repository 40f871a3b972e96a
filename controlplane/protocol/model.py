"""The botocore service model, wrapped: the one source of every name, shape and error code.

Nothing here is specific to ElastiCache except the default service name; the codec modules
walk whatever model they are given (tests also feed a small synthetic model through them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What the wire needs to know about an error: its code, HTTP status and fault side."""

    code: str
    http_status: int
    sender_fault: bool

    @property
    def type(self) -> str:
        """The Query protocol's `<Type>`: who is to blame."""
        return "Sender" if self.sender_fault else "Receiver"


class ApiModel:
    """One loaded service model plus per-model caches of the compiled codec functions.

    Built once in `create_app` and injected; there is no module-level instance, so tests can
    build as many (or as different) models as they like.
    """

    def __init__(
        self,
        service: ServiceModel | None = None,
        *,
        service_name: str = "elasticache",
        api_version: str | None = None,
    ) -> None:
        if service is None:
            service = botocore.session.get_session().get_service_model(service_name, api_version)
        self.service: ServiceModel = service
        self.api_version: str = service.api_version
        # The Query protocol's responses are namespaced with this; the model states it.
        self.xml_namespace: str = str(service.metadata.get("xmlNamespace", ""))
        self.operation_names: tuple[str, ...] = tuple(service.operation_names)
        self._operations: dict[str, OperationModel] = {
            name: service.operation_model(name) for name in self.operation_names
        }
        self._errors: dict[str, ErrorInfo] = {}
        for shape in service.error_shapes:
            err = shape.metadata.get("error", {})
            status = int(err.get("httpStatusCode", 400))
            self._errors[shape.name] = ErrorInfo(
                code=str(err.get("code", shape.name)),
                http_status=status,
                # A model that omits senderFault blames the side its status class points at.
                sender_fault=bool(err.get("senderFault", status < 500)),
            )
        # Compiled parse/serialize functions, keyed by the codec module that owns them.
        # Per instance on purpose: a compiled function is only valid for the model it walked.
        self.codec_cache: dict[str, dict[Any, Any]] = {}

    def operation(self, name: str) -> OperationModel | None:
        return self._operations.get(name)

    @property
    def error_shape_names(self) -> tuple[str, ...]:
        return tuple(self._errors)

    def error_info(self, shape_name: str) -> ErrorInfo:
        """The model's error metadata for an error shape; KeyError if the model has no such shape."""
        return self._errors[shape_name]

    def cache(self, owner: str) -> dict[Any, Any]:
        """A per-model cache dict for one codec module."""
        return self.codec_cache.setdefault(owner, {})
