"""IAM authentication tokens made exactly as AWS's client guides make them (the redis-py
`ElastiCacheIAMProvider` example): botocore's RequestSigner presigns a GET of
`https://<cache>/?Action=connect&User=<user>` for 900 s, and the scheme is cut off.

For clients of this service (the examples, the tests, the bench); the service itself only
checks tokens (iam_token.py). `now`: sign as if at that time (seconds since the epoch; a token
signed 16 minutes ago must be refused), else the real time."""

from __future__ import annotations

import datetime
from unittest import mock
from urllib.parse import ParseResult, urlencode, urlunparse

import botocore.auth
import botocore.session
from botocore.model import ServiceId
from botocore.signers import RequestSigner

__all__ = ["iam_token"]


def iam_token(cache: str, user: str, *, key: str = "testing", secret: str = "testing", region: str = "us-east-1",
              serverless: bool = False, action: str = "connect", expires: int = 900, now: float | None = None) -> str:
    session = botocore.session.get_session()
    session.set_credentials(key, secret)
    credentials = session.get_credentials()
    assert credentials is not None
    signer = RequestSigner(ServiceId("elasticache"), region, "elasticache", "v4", credentials,
                           session.get_component("event_emitter"))
    query = {"Action": action, "User": user}
    if serverless:
        query["ResourceType"] = "ServerlessCache"
    url = urlunparse(ParseResult(scheme="https", netloc=cache, path="/", query=urlencode(query), params="",
                                 fragment=""))
    request = {"method": "GET", "url": url, "body": {}, "headers": {}, "context": {}}
    if now is None:
        signed = signer.generate_presigned_url(request, operation_name="connect", expires_in=expires,
                                               region_name=region)
    else:
        # botocore's SigV4 signer takes the time from botocore.auth.get_current_datetime (naive
        # UTC); patched for this call only (not thread safe: a client helper, not the service's).
        at = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: at):
            signed = signer.generate_presigned_url(request, operation_name="connect", expires_in=expires,
                                                   region_name=region)
    return str(signed).removeprefix("https://")
