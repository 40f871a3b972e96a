"""The IAM authentication token verifier against tokens botocore's signer makes, as AWS's
guides make them (controlplane/auth/iam_signer.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controlplane.auth.iam_signer import iam_token
from controlplane.auth.iam_token import CacheTarget, IamTokenVerifier, TokenRefused
from controlplane.auth.keys import AccessKey
from controlplane.auth.policy import load_policies
from controlplane.state.users import User, UserSpec

ACCOUNT = "111122223333"
KEYS = {"AKIAIAM": AccessKey("AKIAIAM", "iam-secret", ACCOUNT, "alice"),
        "AKIAOTHER": AccessKey("AKIAOTHER", "other-secret", "444455556666", "bob")}
CACHE = CacheTarget("my-cache", ACCOUNT, "us-east-1")


def _user(user_id: str, auth_type: str = "iam", name: str | None = None) -> User:
    return User(account=ACCOUNT, region="us-east-1", id=user_id, created_at=datetime.now(UTC),
                spec=UserSpec(user_name=name or user_id, engine="redis", access_string="on ~* +@all",
                              rules=["on", "~*", "+@all"], minimum_engine_version="6.0",
                              auth_type=auth_type))  # type: ignore[arg-type]


USERS = {u.id: u for u in (_user("app-iam"), _user("pw-user", "password"), _user("odd", name="other-name"))}


def lookup(account: str, region: str, user_id: str) -> User | None:
    found = USERS.get(user_id)
    return found if found is not None and (found.account, found.region) == (account, region) else None


def verifier(offset: float = 0.0, **kw: object) -> IamTokenVerifier:
    return IamTokenVerifier(KEYS, lookup, now=lambda: time.time() + offset, **kw)  # type: ignore[arg-type]


def token(**kw: object) -> str:
    args: dict[str, object] = {"key": "AKIAIAM", "secret": "iam-secret"}
    args.update(kw)
    return iam_token(str(args.pop("cache", "my-cache")), str(args.pop("user", "app-iam")), **args)  # type: ignore[arg-type]


def refused(why: str, tok: str, *, user: str = "app-iam", cache: CacheTarget = CACHE, offset: float = 0.0) -> None:
    with pytest.raises(TokenRefused, match=why):
        verifier(offset).check(cache, user, tok)
    assert not verifier(offset).verify(cache, user, tok)


def test_a_token_from_botocores_signer_opens_the_cache_for_its_15_minutes() -> None:
    tok = token()
    assert verifier().check(CACHE, "app-iam", tok).access_key_id == "AKIAIAM"
    assert verifier(14 * 60).for_cache(CACHE)("app-iam", tok)
    refused("RequestExpired", tok, offset=16 * 60)  # the acceptance test: 16 minutes old
    refused("not yet current", tok, offset=-16 * 60)  # signed by a clock far ahead


def test_the_serverless_form_opens_serverless_caches_only() -> None:
    serverless = CacheTarget("my-cache", ACCOUNT, "us-east-1", serverless=True)
    assert verifier().verify(serverless, "app-iam", token(serverless=True))
    refused("ResourceType", token(serverless=True))
    refused("ResourceType", token(), cache=serverless)


def test_forged_and_misdirected_tokens_are_refused() -> None:
    refused("SignatureDoesNotMatch", token(secret="wrong-secret"))
    refused("InvalidClientTokenId", token(key="AKIANOBODY", secret="x"))
    refused("not for cache", token(cache="other-cache"))
    refused("not 'app-iam'", token(user="pw-user"))  # a token of another user
    refused("not 'pw-user'", token(), user="pw-user")  # used as another user
    refused("not 'connect'", token(action="disconnect"))
    refused("not at most 900", token(expires=901))
    refused("region", token(region="eu-west-1"))
    refused("account", token(key="AKIAOTHER", secret="other-secret"))
    tok = token()
    signature = tok.rsplit("=", 1)[1]
    tampered = tok[: -len(signature)] + ("0" if signature[0] != "0" else "1") + signature[1:]
    refused("SignatureDoesNotMatch", tampered)
    refused("SignatureDoesNotMatch", tok.replace("&X-Amz-Algorithm", "&Extra=1&X-Amz-Algorithm"))  # not signed
    refused("twice", tok + "&User=pw-user")
    refused("presigned URL", "my-cache?Action=connect")
    refused("presigned URL", "plain-password")


def test_the_user_must_exist_and_use_iam() -> None:
    refused("does not exist", token(user="ghost"), user="ghost")
    refused("does not authenticate with IAM", token(user="pw-user"), user="pw-user")
    refused("does not authenticate with IAM", token(user="odd"), user="odd")


def test_a_policy_file_must_allow_connect_on_the_cache_and_the_user(tmp_path: Path) -> None:
    allow = {"Effect": "Allow", "Action": "elasticache:Connect",
             "Resource": [f"arn:aws:elasticache:us-east-1:{ACCOUNT}:replicationgroup:my-cache",
                          f"arn:aws:elasticache:us-east-1:{ACCOUNT}:user:app-iam"]}
    path = tmp_path / "policies.json"
    path.write_text(json.dumps({"alice": {"Version": "2012-10-17", "Statement": [allow]}}))
    policies = load_policies(path)
    tok = token()
    assert verifier(policies=policies).verify(CACHE, "app-iam", tok)
    other = CacheTarget("other-cache", ACCOUNT, "us-east-1")
    with pytest.raises(TokenRefused, match=r"not allowed elasticache:Connect on .*replicationgroup:other-cache"):
        verifier(policies=policies).check(other, "app-iam", token(cache="other-cache"))
    path.write_text(json.dumps({"alice": {"Version": "2012-10-17", "Statement": [
        allow, {"Effect": "Deny", "Action": "elasticache:Connect", "Resource": "*:user:*"}]}}))
    with pytest.raises(TokenRefused, match="user:app-iam"):
        verifier(policies=load_policies(path)).check(CACHE, "app-iam", tok)
