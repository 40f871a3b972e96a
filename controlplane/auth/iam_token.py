"""IAM authentication tokens for Redis/Valkey caches: the password of a user whose
AuthenticationMode is `iam`.

The token is what AWS's client guides build with botocore's signer: a presigned GET URL

    http://<cache id>/?Action=connect&User=<user id>[&ResourceType=ServerlessCache]&X-Amz-...

signed with SigV4 for service `elasticache` in the cache's region, X-Amz-Expires 900, with the
scheme removed. `IamTokenVerifier.check` refuses it unless all of these hold:

- its signature is the one botocore computes with the secret of the access key it names
  (controlplane/auth/sigv4.py does the SigV4 part, as for API requests), its scope's region is
  the cache's, and that key belongs to the cache's account;
- X-Amz-Expires is at most 900 seconds and has not run out (a 16-minute-old token is refused);
- Action is `connect`, the host is the cache's id, ResourceType=ServerlessCache exactly when the
  cache is a serverless cache;
- User is the user name given on AUTH, and that user exists in the cache's account and region
  with AuthenticationMode iam (for IAM users AWS requires user id == user name);
- with a policy file: its policies allow `elasticache:Connect` on the cache's ARN and on the
  user's ARN (as AWS's guides ask a role to be granted).

A signature can only be checked against a known secret: the keys are those of the credentials
file (settings.credentials_file). Without one, only the test key pair `testing`/`testing`
(moto's default, and what the examples use) is known, in the default account; any other key's
tokens are refused (README: IAM authentication).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from controlplane.auth.keys import AccessKey, Identity, load_keys
from controlplane.auth.policy import Decision, PolicySet, decide, load_policies
from controlplane.auth.sigv4 import HttpRequest, SignatureVerifier
from controlplane.protocol.errors import ServiceError
from controlplane.settings import Settings
from controlplane.state.arns import arn
from controlplane.state.records import ResourceKey
from controlplane.state.store import Store
from controlplane.state.users import User
from engine import Credentials, IamAuthenticator, IamBackend, iam_password

__all__ = ["CONNECT_ACTION", "MAX_TOKEN_EXPIRES", "TEST_KEY", "CacheTarget", "IamTokenVerifier", "TokenRefused",
           "build_iam_verifier", "iam_authenticator", "store_users"]

log = logging.getLogger(__name__)

MAX_TOKEN_EXPIRES = 900  # AWS: an IAM authentication token is valid 15 minutes
CONNECT_ACTION = "elasticache:Connect"
SERVERLESS = "ServerlessCache"
TEST_KEY = "testing"  # access key id and secret known when there is no credentials file

# (account, region, user id) -> the user record, None when there is none.
UserLookup = Callable[[str, str, str], User | None]


class TokenRefused(Exception):
    """Why a token does not open a cache (for the service's log: the client only ever sees
    WRONGPASS, as from AWS)."""


@dataclass(frozen=True, slots=True)
class CacheTarget:
    """The cache a connection is for: a replication group's (or serverless cache's) id, in an
    account and region."""

    cache_id: str
    account: str
    region: str
    serverless: bool = False

    @classmethod
    def of_realm(cls, realm: str) -> CacheTarget | None:
        """The replication group a node's IAM realm names (state/acl.py iam_realm); None for
        anything else."""
        parts = realm.split("/")
        if len(parts) != 3 or not all(parts):
            return None
        account, region, cache_id = parts
        return cls(cache_id, account, region)

    @property
    def arn(self) -> str:
        return arn(self.region, self.account, "serverless-cache" if self.serverless else "replication-group",
                   self.cache_id)


class IamTokenVerifier:
    """Checks IAM authentication tokens. `now` is real time (seconds since the epoch): a token's
    age is about the client's clock, as for signed API requests."""

    def __init__(self, keys: Mapping[str, AccessKey], users: UserLookup, *, policies: PolicySet | None = None,
                 now: Callable[[], float] = time.time) -> None:
        self._signatures = SignatureVerifier(keys, service="elasticache", now=now)
        self._users = users
        self._policies = policies

    def check(self, cache: CacheTarget, user: str, token: str) -> AccessKey:
        """The access key that signed `token`, when it opens `cache` as `user`; TokenRefused otherwise."""
        host, sep, rest = token.partition("/")
        if not sep or not rest.startswith("?"):
            raise TokenRefused("not a presigned URL without its scheme (<cache>/?Action=connect&...)")
        query = rest[1:]
        params = parse_qsl(query, keep_blank_values=True)
        single = _single_values(params)
        if host.lower() != cache.cache_id.lower():
            raise TokenRefused(f"the token is for {host!r}, not for cache {cache.cache_id!r}")
        if single.get("Action") != "connect":
            raise TokenRefused(f"Action is {single.get('Action')!r}, not 'connect'")
        if single.get("User") != user:
            raise TokenRefused(f"the token is for user {single.get('User')!r}, not {user!r}")
        if (single.get("ResourceType") == SERVERLESS) != cache.serverless:
            raise TokenRefused("ResourceType=ServerlessCache is for serverless caches only, and they need it")
        expires = single.get("X-Amz-Expires", "")
        if not expires.isdigit() or int(expires) > MAX_TOKEN_EXPIRES:
            raise TokenRefused(f"X-Amz-Expires {expires!r} is not at most {MAX_TOKEN_EXPIRES} seconds")
        try:
            verified = self._signatures.verify(HttpRequest("GET", "/", query, [("host", host)], b""))
        except ServiceError as exc:
            raise TokenRefused(str(exc)) from exc
        key = verified.key
        if verified.region != cache.region:
            raise TokenRefused(f"the token is signed for region {verified.region}, the cache is in {cache.region}")
        if key.account != cache.account:
            raise TokenRefused(f"access key {key.access_key_id} is of account {key.account}, "
                               f"the cache of {cache.account}")
        record = self._users(cache.account, cache.region, user.lower())
        if record is None or record.spec.delete_requested:
            raise TokenRefused(f"user {user!r} does not exist")
        if record.spec.auth_type != "iam" or record.spec.user_name != user:
            raise TokenRefused(f"user {user!r} does not authenticate with IAM (or its name is not its id)")
        self._check_policy(cache, key, record)
        return key

    def verify(self, cache: CacheTarget, user: str, token: str) -> bool:
        """check(), as a yes or no; the reason of a no is logged."""
        try:
            self.check(cache, user, token)
        except TokenRefused as exc:
            log.info("IAM authentication of %r to %s refused: %s", user, cache.cache_id, exc)
            return False
        return True

    def for_cache(self, cache: CacheTarget) -> Callable[[str, str], bool]:
        """`verify(user, token) -> bool` for the authenticator in front of `cache`
        (engine/proxy/iam_auth.py). Blocking (the user lookup reads the store): call it off
        the event loop."""
        return lambda user, token: self.verify(cache, user, token)

    def verify_realm(self, realm: str, user: str, token: str) -> bool:
        """verify() for the cache a node's IAM realm names: what the node runtime's IAM
        authenticators call (NodeRuntime.set_iam_verifier). Blocking (reads the store)."""
        cache = CacheTarget.of_realm(realm)
        if cache is None:
            log.warning("IAM authentication refused: %r names no cache", realm)
            return False
        return self.verify(cache, user, token)

    def _check_policy(self, cache: CacheTarget, key: AccessKey, user: User) -> None:
        if self._policies is None:
            return
        who = Identity(key.account, cache.region, key.access_key_id, key.user, verified=True)
        context: dict[str, Sequence[str]] = {"aws:requestedregion": [cache.region],
                                             "aws:principalaccount": [key.account], "aws:username": [key.user]}
        statements = self._policies.statements_for(who)
        for resource in (cache.arn, arn(cache.region, cache.account, "user", user.id)):
            if decide(statements, CONNECT_ACTION, resource, context.get) is not Decision.ALLOW:
                raise TokenRefused(f"{who.principal} is not allowed {CONNECT_ACTION} on {resource}")


def _single_values(params: list[tuple[str, str]]) -> dict[str, str]:
    """The query's parameters; one given twice is refused (which of two values a check reads
    must not be a question)."""
    found: dict[str, str] = {}
    for name, value in params:
        if name in found:
            raise TokenRefused(f"parameter {name} is given twice")
        found[name] = value
    return found


def store_users(store: Store) -> UserLookup:
    """A UserLookup reading the service's store."""
    return lambda account, region, user_id: store.get(ResourceKey(User.KIND, account, region, user_id), User)


def iam_authenticator(verifier: IamTokenVerifier, cache: CacheTarget, host: str, port: int, backend: IamBackend,
                      admin: Credentials, *, server_tls: ssl.SSLContext | None = None,
                      **options: Any) -> Callable[[], IamAuthenticator]:
    """What `ProxyHub.add_iam_authenticator(name, host, port, ...)` takes for one IAM-enabled
    cache: the authenticator on host:port (TLS when `server_tls`) in front of `backend` (the
    node), checking tokens for `cache`, logging in to the node with the internal passwords the
    node's IAM users have (engine.proxy.iam_auth.with_iam_password with the same `admin`).
    `options`: IamAuthenticator's (max_age, clock, check_every)."""
    return lambda: IamAuthenticator(host, port, backend, verifier.for_cache(cache),
                                    lambda user: iam_password(admin, user), server_tls=server_tls, **options)


def build_iam_verifier(settings: Settings, store: Store) -> IamTokenVerifier:
    """The verifier the settings ask for: the credentials file's keys (else the test key pair
    in the default account), the policy file's policies when there is one. AccessConfigError
    when a file cannot be used."""
    if settings.credentials_file:
        keys = load_keys(settings.credentials_file, settings.default_account)
    else:
        keys = {TEST_KEY: AccessKey(TEST_KEY, TEST_KEY, settings.default_account, TEST_KEY)}
    policies = load_policies(settings.policy_file) if settings.policy_file else None
    return IamTokenVerifier(keys, store_users(store), policies=policies)
