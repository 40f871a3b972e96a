"""IAM authentication tokens made exactly as AWS's client guides make them (the redis-py
`ElastiCacheIAMProvider` example): botocore's RequestSigner presigns a GET of
`https://<cache>/?Action=connect&User=<user>` for 900 s, and the scheme is cut off."""

from __future__ import annotations

from urllib.parse import ParseResult, urlencode, urlunparse

import botocore.session
from botocore.model import ServiceId
from botocore.signers import RequestSigner


def iam_token(cache: str, user: str, *, key: str = "testing", secret: str = "testing", region: str = "us-east-1",
              serverless: bool = False, action: str = "connect", expires: int = 900) -> str:
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
    signed = signer.generate_presigned_url({"method": "GET", "url": url, "body": {}, "headers": {}, "context": {}},
                                           operation_name="connect", expires_in=expires, region_name=region)
    return str(signed).removeprefix("https://")
