"""Who may call the Query API, and do what: `identify` says who a request is from (its
signature checked when verify_signatures is on), `authorize` asks the policy file whether they
may perform its operation on its resources.

With neither a credentials file nor a policy file (the default) a request is who its SigV4
credential says, unchecked, as with moto: account from the access key, region from the scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controlplane.auth.keys import AccessConfigError, AccessKey, Identity, account_for_key, load_keys
from controlplane.auth.policy import Decision, PolicySet, decide, load_policies
from controlplane.auth.resources import lower_keys, request_tags, resources_of
from controlplane.auth.sigv4 import HttpRequest, SignatureVerifier
from controlplane.protocol.errors import ServiceError
from controlplane.settings import Settings

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([a-z0-9-]+)/")
SERVICE_PREFIX = "elasticache"
_RESOURCE_TAG = "aws:resourcetag/"


class Access:
    def __init__(self, *, default_account: str, default_region: str, keys: Mapping[str, AccessKey] | None = None,
                 verifier: SignatureVerifier | None = None, policies: PolicySet | None = None,
                 tags: Callable[[str], Mapping[str, str] | None] = lambda _arn: None) -> None:
        self._default_account = default_account
        self._default_region = default_region
        self._keys = dict(keys or {})
        self.verifier = verifier
        self.policies = policies
        self._tags = tags

    # --- who ---

    def identify(self, request: HttpRequest, query: Mapping[str, str]) -> Identity:
        """Who `request` is from; ServiceError (MissingAuthenticationToken, InvalidClientTokenId,
        SignatureDoesNotMatch, ...) when signatures are verified and its signature does not hold."""
        if self.verifier is not None:
            verified = self.verifier.verify(request)
            key = verified.key
            return Identity(key.account, verified.region, key.access_key_id, key.user, verified=True)
        authorization = next((v for k, v in request.headers if k == "authorization"), "")
        return self.claimed(authorization, query)

    def claimed(self, authorization: str, query: Mapping[str, str]) -> Identity:
        """Who a request says it is from (nothing checked): account from the access key (a key
        of the credentials file: its account; else account_for_key), region from the scope."""
        m = _CREDENTIAL.search(authorization)
        if m is None and "X-Amz-Credential" in query:
            m = _CREDENTIAL.search("Credential=" + query["X-Amz-Credential"])
        if m is None:
            return Identity(self._default_account, self._default_region)
        key_id, region = m.group(1), m.group(2)
        known = self._keys.get(key_id)
        if known is not None:
            return Identity(known.account, region, key_id, known.user)
        return Identity(account_for_key(key_id, self._default_account), region, key_id)

    # --- may they ---

    def authorize(self, operation: str, params: Mapping[str, Any], who: Identity) -> None:
        """Nothing when the policy file allows `who` to perform `operation` on every resource
        it acts on (or there is no policy file); ServiceError AccessDenied otherwise."""
        if self.policies is None:
            return
        statements = self.policies.statements_for(who)
        action = f"{SERVICE_PREFIX}:{operation}"
        tags, tag_keys = request_tags(params)
        request_context: dict[str, Sequence[str]] = {
            "aws:requestedregion": [who.region], "aws:principalaccount": [who.account],
            "aws:securetransport": ["false"], **({"aws:tagkeys": tag_keys} if tag_keys else {}),
            **({"aws:username": [who.user]} if who.user else {}),
            **{f"aws:requesttag/{k}": v for k, v in lower_keys(tags).items()}}
        for resource in resources_of(operation, params, who.account, who.region):
            decision = decide(statements, action, resource, _Context(request_context, resource, self._tags))
            if decision is not Decision.ALLOW:
                why = ("with an explicit deny in an identity-based policy" if decision is Decision.EXPLICIT_DENY
                       else f"because no identity-based policy allows the {action} action")
                raise ServiceError("AccessDenied", f"User: {who.principal} is not authorized to perform: {action} "
                                                   f"on resource: {resource} {why}")


class _Context:
    """The condition keys of one request and resource; the resource's tags are looked up only
    when a condition asks for one, and then once."""

    def __init__(self, request: Mapping[str, Sequence[str]], resource: str,
                 tags_of: Callable[[str], Mapping[str, str] | None]) -> None:
        self._request = request
        self._resource = resource
        self._tags_of = tags_of
        self._tags: dict[str, Sequence[str]] | None = None

    def __call__(self, key: str) -> Sequence[str] | None:
        if key.startswith(_RESOURCE_TAG):
            if self._tags is None:
                self._tags = lower_keys(self._tags_of(self._resource))
            return self._tags.get(key.removeprefix(_RESOURCE_TAG))
        return self._request.get(key)


def build_access(settings: Settings, tags: Callable[[str], Mapping[str, str] | None]) -> Access:
    """The Access the settings ask for. AccessConfigError when a file cannot be used, or when
    signatures are to be verified without a credentials file to verify them with."""
    keys = load_keys(settings.credentials_file, settings.default_account) if settings.credentials_file else None
    if settings.verify_signatures and keys is None:
        raise AccessConfigError("verifying signatures (the strict profile) needs a credentials file: set "
                                "ELASTICACHE_LOCAL_CREDENTIALS_FILE (or --credentials-file) to a JSON or INI file of "
                                "access keys (README: Strict profile)")
    return Access(default_account=settings.default_account, default_region=settings.region, keys=keys,
                  verifier=SignatureVerifier(keys) if settings.verify_signatures and keys else None,
                  policies=load_policies(settings.policy_file) if settings.policy_file else None, tags=tags)
