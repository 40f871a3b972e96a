"""The Query API's HTTP face: `POST /` (form body) and `GET /?Action=...`.

identify -> parse -> authorize -> handler -> serialize: the request's account and region come
from its SigV4 credential (its signature checked when settings ask: controlplane.auth), its
operation is checked against the policy file when there is one. Handlers run on worker threads
(they write SQLite); identifying and parsing are cheap and stay here.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from controlplane.auth.access import Access
from controlplane.auth.keys import Identity
from controlplane.auth.sigv4 import HttpRequest
from controlplane.handlers.context import AnyHandler, Services
from controlplane.protocol.errors import ServiceError, internal_failure, not_implemented
from controlplane.protocol.model import ApiModel
from controlplane.protocol.parser import ParsedRequest, check_version, parse
from controlplane.protocol.serializer import serialize_error, serialize_result

log = logging.getLogger("elasticache_local.api")

__all__ = ["Identity", "QueryApi", "redacted"]

# Members whose values are secrets (AuthToken; a user's Passwords, also inside AuthenticationMode).
_SECRET_KEY = re.compile(r"(?:^|\.)(?:AuthToken|Passwords)(?:\.|$)")


def redacted(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A request's pairs as a log line may show them: secrets replaced."""
    return [(k, "<redacted>" if _SECRET_KEY.search(k) else v) for k, v in pairs]


class QueryApi:
    def __init__(self, api: ApiModel, handlers: Mapping[str, AnyHandler], services: Services,
                 on_browser: Callable[[Request], Response] | None = None,
                 observe: Callable[[str, float], None] | None = None, access: Access | None = None) -> None:
        self.api = api
        self.handlers = dict(handlers)
        self.services = services
        self._on_browser = on_browser
        self._observe = observe  # told (operation, seconds) of every request answered (metrics)
        settings = services.settings
        self.access = access or Access(default_account=settings.default_account, default_region=settings.region)
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
            request = parse(self.api, pairs)
            check_version(self.api, request.operation, pairs)
            return request
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
            self.access.authorize(operation, request.params, who)  # before anything is looked up
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
        body = b""
        if request.method == "POST":
            body = await request.body()
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        elif not any(k == "Action" for k, _ in pairs) and self._on_browser is not None:
            return self._on_browser(request)
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        raw = HttpRequest(request.method, request.scope.get("raw_path", b"/").decode("latin-1"), query,
                          [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw], body)
        try:
            who = self.access.identify(raw, dict(pairs))
        except ServiceError as refused:  # not who it says: nothing of the request is read
            status, body_out = serialize_error(self.api, refused, request_id)
            operation = "unauthenticated"
        else:
            request_read = self.read(pairs)
            if isinstance(request_read, ServiceError) or request_read.operation in self.inline_operations:
                # Refusals and reads of the in-memory mirror: pure CPU, well under a millisecond,
                # and the hop to a worker thread would cost a third of the request.
                status, body_out = self.answer(request_read, who, request_id)
            else:
                status, body_out = await run_in_threadpool(self.answer, request_read, who, request_id)
            # An unreadable request is one label, whatever its Action said: the label set stays bounded.
            operation = "unreadable" if isinstance(request_read, ServiceError) else request_read.operation
        if self._observe is not None:
            self._observe(operation, time.perf_counter() - started)
        return Response(body_out, status_code=status, media_type="text/xml",
                        headers={"x-amzn-RequestId": request_id})
