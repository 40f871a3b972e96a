"""The JSON API and the dashboard are not AWS APIs, and they act as any account: with
signatures verified they would be a way around them and around the policies. So when the guard
is on (verify_signatures, or admin_token set) they need the admin token: `Authorization: Bearer
<token>` (scripts, the CLI), or HTTP Basic with the token as the password (a browser asks for
it once). Without an admin token set they are closed. /api/v1/health (`elasticache-local
status`, and serve's check of who holds its port) stays open, as do /metrics and /docs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

_GUARDED = ("/api/", "/moto-api/", "/dashboard")
_OPEN = frozenset({"/api/v1/health"})


def guarded(path: str) -> bool:
    return path.startswith(_GUARDED) and path not in _OPEN


def _presented(scope: Scope) -> str | None:
    """The token the request carries: a bearer token, or a Basic password."""
    name: bytes
    value: bytes
    for name, value in scope.get("headers", ()):
        if name != b"authorization":
            continue
        scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
    return None


class AdminGuard:
    """ASGI middleware: a guarded path answers 401 (403 with no token configured) unless the
    request carries the admin token. A plain ASGI class, so the live feed streams through it."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not guarded(scope["path"]):
            await self.app(scope, receive, send)
            return
        presented = _presented(scope)
        if self._token is not None and presented is not None and hmac.compare_digest(presented.encode(), self._token):
            await self.app(scope, receive, send)
            return
        if self._token is None:
            status, code, message = 403, "AccessDenied", (
                "The JSON API and the dashboard are closed while signatures are verified (the strict profile) "
                "and no admin token is set: set ELASTICACHE_LOCAL_ADMIN_TOKEN and send it as "
                "'Authorization: Bearer <token>' (or as the password of HTTP Basic).")
        else:
            status, code, message = 401, "MissingAuthenticationToken" if presented is None else "AccessDenied", (
                "This needs the admin token (ELASTICACHE_LOCAL_ADMIN_TOKEN): send 'Authorization: Bearer <token>', "
                "or give it as the password when the browser asks.")
        body = json.dumps({"code": code, "message": message, "type": "Sender"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Basic realm="elasticache-local", charset="UTF-8"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
