"""The Query API's HTTP face: `POST /` (form body) and `GET /?Action=...`.

parse -> handler -> serialize, with the request's account and region taken from its SigV4
credential. Handlers run on worker threads (they write SQLite); parsing is cheap and stays here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from controlplane.handlers.context import AnyHandler, Services
from controlplane.protocol.errors import ServiceError, internal_failure, not_implemented
from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import ParsedRequest, parse
from controlplane.protocol.serializer import serialize_error, serialize_result

log = logging.getLogger("elasticache_local.api")

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/")
_ACCOUNT_KEY = re.compile(r"^\d{12}$")
# Members whose values are secrets (AuthToken; a user's Passwords, also inside AuthenticationMode).
_SECRET_KEY = re.compile(r"(?:^|\.)(?:AuthToken|Passwords)(?:\.|$)")


def redacted(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A request's pairs as a log line may show them: secrets replaced."""
    return [(k, "<redacted>" if _SECRET_KEY.search(k) else v) for k, v in pairs]


@dataclass(frozen=True)
class Identity:
    account: str
    region: str


def identity(headers: Mapping[str, str], query: Mapping[str, str], default_account: str,
             default_region: str) -> Identity:
    """Account from the access key, region from the SigV4 credential scope.

    As moto does: an access key id of 12 digits is taken as the account id, so tests can act as
    several accounts; any other key maps to the default account.
    """
    credential = headers.get("authorization", "")
    m = _CREDENTIAL.search(credential)
    if m is None and "X-Amz-Credential" in query:
        m = _CREDENTIAL.search("Credential=" + query["X-Amz-Credential"])
    if m is None:
        return Identity(default_account, default_region)
    key, region = m.group(1), m.group(2)
    return Identity(key if _ACCOUNT_KEY.match(key) else default_account, region)


class QueryApi:
    def __init__(self, api: ApiModel, handlers: Mapping[str, AnyHandler], services: Services,
                 on_browser: Callable[[Request], Response] | None = None,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.api = api
        self.handlers = dict(handlers)
        self.services = services
        self._on_browser = on_browser
        self._observe = observe  # told (operation, seconds) of every request answered (metrics)
        # Operations that only read the store's in-memory mirror (no SQLite, no runtime).
        self.inline_operations = frozenset({"DescribeCacheClusters", "DescribeReplicationGroups",
                                            "DescribeCacheEngineVersions", "ListTagsForResource"})

    def dispatch(self, pairs: list[tuple[str, str]], who: Identity, request_id: str) -> tuple[int, bytes]:
        """One request, start to end; never raises."""
        return self.answer(self.read(pairs), who, request_id)

    def read(self, pairs: list[tuple[str, str]]) -> ParsedRequest | ServiceError:
        """The request as the handler will see it, or why it cannot be read. Read once: the
        router's choice of path and the handler act on one and the same reading."""
        try:
            return parse(self.api, pairs)
        except ServiceError as err:
            return err
        except Exception:  # a parser bug: an InternalFailure reply, never a bare 500
            log.exception("reading a request failed: %r", redacted(pairs[:20]))
            return internal_failure("being read")

    def answer(self, request: ParsedRequest | ServiceError, who: Identity, request_id: str) -> tuple[int, bytes]:
        """The reply to a request read by `read`; never raises."""
        operation = "?"
        try:
            if isinstance(request, ServiceError):
                raise request
            operation = request.operation
            handler = self.handlers.get(operation)
            if handler is None:
                raise not_implemented(operation)
            # The parser read the request by the operation's input shape: it is the handler's typed request.
            result = handler(self.services.context(who.account, who.region, request_id), request.params)
            return 200, serialize_result(self.api, operation, result or {}, request_id)
        except ServiceError as err:
            error = err
        except Exception:
            log.exception("request %s (%s) failed", request_id, operation)
            error = internal_failure(request_id)
        try:
            return serialize_error(self.api, error, request_id)
        except KeyError:  # an error name the model does not know: our bug, not the caller's
            log.exception("request %s (%s): unknown error %s", request_id, operation, error.name)
            return serialize_error(self.api, internal_failure(request_id), request_id)

    async def endpoint(self, request: Request) -> Response:
        query = request.url.query
        pairs = parse_qsl(query, keep_blank_values=True) if query else []
        if request.method == "POST":
            body = await request.body()
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        elif not any(k == "Action" for k, _ in pairs) and self._on_browser is not None:
            return self._on_browser(request)
        started = time.perf_counter()
        settings = self.services.settings
        who = identity(request.headers, dict(pairs), settings.default_account, settings.region)
        request_id = str(uuid.uuid4())
        request_read = self.read(pairs)
        if isinstance(request_read, ServiceError) or request_read.operation in self.inline_operations:
            # Refusals and reads of the in-memory mirror: pure CPU, well under a millisecond,
            # and the hop to a worker thread would cost a third of the request.
            status, body_out = self.answer(request_read, who, request_id)
        else:
            status, body_out = await run_in_threadpool(self.answer, request_read, who, request_id)
        if self._observe is not None:
            # An unreadable request is one label, whatever its Action said: the label set stays bounded.
            operation = "unreadable" if isinstance(request_read, ServiceError) else request_read.operation
            self._observe(operation, time.perf_counter() - started)
        return Response(body_out, status_code=status, media_type="text/xml",
                        headers={"x-amzn-RequestId": request_id})
