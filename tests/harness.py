"""Calling the service the way boto3 does, without HTTP: botocore's own serializer builds the
request, our dispatch answers, botocore's own parser reads the reply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from controlplane.query import Identity
from controlplane.service import Service


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Caller:
    service: Service
    account: str = "123456789012"
    region: str = "us-east-1"

    def __call__(self, operation: str, **params: Any) -> dict[str, Any]:
        op = self.service.api.operation(operation)
        assert op is not None, operation
        request = create_serializer("query").serialize_to_request(params, op)
        pairs = [(k, str(v)) for k, v in request["body"].items()]
        # Round-trip through urlencoding exactly as the HTTP path does.
        from urllib.parse import parse_qsl

        pairs = parse_qsl(urlencode(pairs), keep_blank_values=True)
        status, body = self.service.query.dispatch(pairs, Identity(self.account, self.region), "req-1")
        parsed: dict[str, Any] = create_parser("query").parse(
            {"body": body, "headers": {}, "status_code": status}, op.output_shape
        )
        if status >= 300:
            err = parsed["Error"]
            raise ApiError(err["Code"], err.get("Message", ""), status)
        parsed.pop("ResponseMetadata", None)
        return parsed
