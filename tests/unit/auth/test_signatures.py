"""SigV4 verification (verify_signatures on) seen from boto3: botocore signs, the service checks
with botocore's signer, and a refusal is an AWS error botocore raises as ClientError with the
code and HTTP status AWS uses."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from controlplane.auth.keys import AccessConfigError, load_keys
from controlplane.settings import Settings
from tests.harness import asgi_send
from tests.unit.auth.conftest import ALICE, BOB, SecureWorld

CREATE = {"CacheClusterId": "web", "Engine": "redis", "CacheNodeType": "cache.t3.micro", "NumCacheNodes": 1}


def _refusal(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Message"]


def _signed_at(offset: datetime.timedelta) -> Any:
    """botocore's clock moved by `offset` while it signs (the service's clock stays real)."""
    moved = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + offset
    return mock.patch("botocore.auth.get_current_datetime", return_value=moved)


def _cluster_ids(client: Any) -> list[str]:
    return [c["CacheClusterId"] for c in client.describe_cache_clusters()["CacheClusters"]]


def test_a_signed_request_is_answered_in_its_keys_account(verifying: SecureWorld) -> None:
    alice, bob = verifying.client(ALICE), verifying.client(BOB)
    created = alice.create_cache_cluster(**CREATE)["CacheCluster"]
    assert created["ARN"] == "arn:aws:elasticache:us-east-1:111122223333:cluster:web"  # the key's AccountId
    assert _cluster_ids(alice) == ["web"]
    assert _cluster_ids(bob) == []  # bob's key belongs to another account


def test_a_wrong_secret_is_signature_does_not_match_and_changes_nothing(verifying: SecureWorld) -> None:
    code, status, message = _refusal(lambda: verifying.client(ALICE, secret="not-it").create_cache_cluster(**CREATE))
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match the signature you provided.")
    assert _cluster_ids(verifying.client(ALICE)) == []


def test_an_unknown_key_is_invalid_client_token_id(verifying: SecureWorld) -> None:
    stranger = {"AccessKeyId": "AKIANOBODY0000000000", "SecretAccessKey": "whatever"}
    code, status, message = _refusal(lambda: verifying.client(stranger).describe_cache_clusters())
    assert (code, status, message) == ("InvalidClientTokenId", 403,
                                       "The security token included in the request is invalid.")


def test_a_request_signed_twenty_minutes_ago_has_expired(verifying: SecureWorld) -> None:
    client = verifying.client(ALICE)
    with _signed_at(-datetime.timedelta(minutes=20)):
        code, status, message = _refusal(client.describe_cache_clusters)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert re.fullmatch(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
                        r"\(\d{8}T\d{6}Z - 15 min\.\)", message), message
    with _signed_at(datetime.timedelta(minutes=20)):
        code, status, message = _refusal(client.describe_cache_clusters)
    assert (code, status) == ("SignatureDoesNotMatch", 403) and message.startswith("Signature not yet current: ")
    with _signed_at(-datetime.timedelta(minutes=14)):  # inside AWS's 15 minutes
        assert _cluster_ids(client) == []


def test_an_unsigned_request_is_missing_authentication_token(verifying: SecureWorld) -> None:
    reply = asgi_send(verifying.app, "POST", "http://127.0.0.1:8379/",
                      {"Content-Type": "application/x-www-form-urlencoded"},
                      b"Action=DescribeCacheClusters&Version=2015-02-02")
    assert reply.status_code == 403
    assert "<Code>MissingAuthenticationToken</Code>" in reply.text and "<Type>Sender</Type>" in reply.text


def test_a_changed_body_no_longer_matches_its_signature(verifying: SecureWorld) -> None:
    client = verifying.client(ALICE)

    def tamper(request: Any, **_: Any) -> None:
        request.body = request.body.replace("CacheClusterId=web", "CacheClusterId=wex")

    client.meta.events.register_first("before-send.elasticache", tamper)
    code, status, _ = _refusal(lambda: client.create_cache_cluster(**CREATE))
    assert (code, status) == ("SignatureDoesNotMatch", 403)


def test_a_presigned_url_is_verified_and_expires(verifying: SecureWorld) -> None:
    client = verifying.client(ALICE)
    client.create_cache_cluster(**CREATE)
    # HttpMethod: botocore signs a Query operation's URL for POST unless told; AWS checks the method used.
    url = client.generate_presigned_url("describe_cache_clusters", Params={"CacheClusterId": "web"}, ExpiresIn=60,
                                        HttpMethod="GET")
    reply = asgi_send(verifying.app, "GET", url, {}, None)
    assert reply.status_code == 200 and "<CacheClusterId>web</CacheClusterId>" in reply.text
    tampered = url.replace("CacheClusterId=web", "CacheClusterId=other")
    assert "<Code>SignatureDoesNotMatch</Code>" in asgi_send(verifying.app, "GET", tampered, {}, None).text
    with _signed_at(-datetime.timedelta(minutes=2)):
        old = client.generate_presigned_url("describe_cache_clusters", Params={}, ExpiresIn=60, HttpMethod="GET")
    reply = asgi_send(verifying.app, "GET", old, {}, None)
    assert reply.status_code == 400 and "<Code>RequestExpired</Code>" in reply.text
    assert urlsplit(old).query  # the signature travelled in the query string


def test_the_scope_must_name_elasticache(verifying: SecureWorld) -> None:
    body = "Action=DescribeCacheClusters&Version=2015-02-02"
    request = AWSRequest("POST", "http://127.0.0.1:8379/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(ALICE["AccessKeyId"], ALICE["SecretAccessKey"]), "sqs", "us-east-1").add_auth(request)
    reply = asgi_send(verifying.app, "POST", request.url, dict(request.headers.items()), body.encode())
    assert reply.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in reply.text
    assert "Credential should be scoped to correct service: 'elasticache'" in reply.text


def test_strict_without_a_credentials_file_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="needs a credentials file"):
        SecureWorld(tmp_path, profile="strict")
    assert Settings(profile="strict").verify_signatures


def test_an_ini_credentials_file_names_users_by_section(tmp_path: Path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[carol]\naws_access_key_id = AKIACAROL\naws_secret_access_key = s3cret\n"
                    "aws_account_id = 777788889999\n\n[dave]\naws_access_key_id = 210987654321\n"
                    "aws_secret_access_key = x\n")
    keys = load_keys(path, "123456789012")
    assert (keys["AKIACAROL"].user, keys["AKIACAROL"].account) == ("carol", "777788889999")
    assert keys["210987654321"].account == "210987654321"  # a 12-digit key is its account, as without a file


@pytest.mark.parametrize("text, complaint", [
    ('[{"AccessKeyId": "A"}]', "needs an access key id and a secret"),
    ('[{"AccessKeyId": "A", "SecretAccessKey": "s", "AccountId": "12"}]', "is not 12 digits"),
    ('[{"AccessKeyId": "A", "SecretAccessKey": "s"}, {"AccessKeyId": "A", "SecretAccessKey": "t"}]', "listed twice"),
    ("[]", "lists no access key"),
    ("not = [ini", "neither JSON nor an INI"),
])
def test_a_bad_credentials_file_says_what_is_wrong(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "credentials"
    path.write_text(text)
    with pytest.raises(AccessConfigError, match=re.escape(complaint)):
        load_keys(path, "123456789012")
