"""Calling the service the way boto3 does, without HTTP: botocore's own serializer builds the
request, our dispatch answers, botocore's own parser reads the reply."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import boto3
import httpx
from botocore.awsrequest import AWSResponse
from botocore.config import Config
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


class _Body:
    """The raw body botocore reads an AWSResponse from."""

    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Any:
        return iter([self._content])


def asgi_send(app: Any, method: str, url: str, headers: dict[str, str], body: bytes | None) -> httpx.Response:
    """One HTTP request to an ASGI app, without a socket."""
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.request(method, url, headers=headers, content=body)

    return asyncio.run(call())


def boto3_over_asgi(app: Any, *, access_key: str, secret_key: str, region: str = "us-east-1",
                    endpoint: str = "http://127.0.0.1:8379") -> Any:
    """A real boto3 ElastiCache client (its own serializer, SigV4 signer, parser and errors)
    whose requests are answered by `app` in this process instead of over a socket."""
    client = boto3.client("elasticache", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
                          aws_secret_access_key=secret_key,
                          config=Config(retries={"max_attempts": 1, "mode": "standard"}))

    def send(request: Any, **_: Any) -> AWSResponse:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        reply = asgi_send(app, request.method, request.url, dict(request.headers.items()), body)
        return AWSResponse(request.url, reply.status_code, dict(reply.headers), _Body(reply.content))

    client.meta.events.register("before-send.elasticache", send)
    return client
