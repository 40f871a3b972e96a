"""SigV4 verification: the signature a request carries, checked against the one botocore's own
signer (botocore.auth.SigV4Auth) computes over the same request with the secret of the key it
names. Both forms: the Authorization header (boto3, the aws cli, Terraform) and the presigned
query string (X-Amz-Signature).

The errors are AWS's (the common errors of Query APIs): MissingAuthenticationToken,
IncompleteSignature, InvalidClientTokenId (a key nobody issued), SignatureDoesNotMatch (a wrong
secret, a changed request, or a time more than 15 minutes off: "Signature expired"), and
RequestExpired (a presigned request past its X-Amz-Expires).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from controlplane.auth.keys import AccessKey
from controlplane.protocol.errors import ServiceError

MAX_SKEW = timedelta(minutes=15)  # AWS's allowance between a request's time and the service's clock
MAX_EXPIRES = 7 * 24 * 3600  # the longest X-Amz-Expires SigV4 allows
ALGORITHM = "AWS4-HMAC-SHA256"
_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as it came over the wire: header names lower-case, in order, repeats kept;
    `path` as sent (still percent-encoded); `query` the raw query string."""

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Verified:
    key: AccessKey
    region: str


@dataclass(frozen=True, slots=True)
class _Claim:
    """What a request says about its signature, from its header or its query string."""

    key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: list[str]
    signature: str
    timestamp: str  # YYYYMMDDTHHMMSSZ
    signed_at: datetime  # the same, read
    expires: int | None  # presigned only
    query: list[tuple[str, str]]  # what the canonical query string is made of


def _error(code: str, message: str) -> ServiceError:
    return ServiceError(code, message)


class SigningKeys:
    """Derived SigV4 signing keys by (secret, date, region, service): derived once per day and
    region, not four HMACs per request. Bounded: a new day's keys replace the old ones."""

    def __init__(self, limit: int = 1024) -> None:
        self._keys: dict[tuple[str, str, str, str], bytes] = {}
        self._limit = limit

    def get(self, secret: str, date: str, region: str, service: str) -> bytes:
        cache_key = (secret, date, region, service)
        found = self._keys.get(cache_key)
        if found is None:
            found = f"AWS4{secret}".encode()
            for part in (date, region, service, "aws4_request"):  # as SigV4Auth.signature derives it
                found = _hmac(found, part)
            if len(self._keys) >= self._limit:
                self._keys.clear()
            self._keys[cache_key] = found
        return found


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class _Signer(SigV4Auth):
    """botocore's signer (its canonical request and string to sign), told which headers the
    client signed (botocore itself would pick every header but a few), its last step, the HMAC
    with the signing key, done with a key derived once per day and region (SigningKeys)."""

    def __init__(self, key: AccessKey, claim: _Claim, signed: HTTPHeaders, body: bytes, keys: SigningKeys) -> None:
        super().__init__(Credentials(key.access_key_id, key.secret), claim.service, claim.region)
        self._body = body
        self._key = key
        self._claim = claim
        self._signed = signed
        self._keys = keys

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed

    def payload(self, request: AWSRequest) -> str:
        # What SigV4Auth.payload computes for a plain-HTTP request with a bytes body, without
        # AWSRequest.body's preparing of every header first (a third of the verification).
        return hashlib.sha256(self._body).hexdigest()

    def signature(self, string_to_sign: str, request: AWSRequest) -> str:
        signing_key = self._keys.get(self._key.secret, self._claim.scope_date, self._claim.region, self._claim.service)
        return hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class SignatureVerifier:
    """Checks requests against the keys of a credentials file. `now` is real time (seconds since
    the epoch): a signature's age is about the client's clock, never the service clock that
    `clock advance` moves."""

    def __init__(self, keys: Mapping[str, AccessKey], service: str = "elasticache",
                 now: Callable[[], float] = time.time) -> None:
        self._keys = dict(keys)
        self._service = service
        self._now = now
        self._signing_keys = SigningKeys()

    def verify(self, request: HttpRequest) -> Verified:
        """The key and region of a correctly signed request; ServiceError otherwise."""
        claim = self._claim(request)
        key = self._keys.get(claim.key_id)
        if key is None:
            raise _error("InvalidClientTokenId", "The security token included in the request is invalid.")
        self._check_scope(claim)
        self._check_time(claim)
        expected = self._expected_signature(request, claim, key)
        if not hmac.compare_digest(expected, claim.signature):
            raise _error("SignatureDoesNotMatch", _MISMATCH)
        return Verified(key, claim.region)

    # --- reading the claim ---

    def _claim(self, request: HttpRequest) -> _Claim:
        query = parse_qsl(request.query, keep_blank_values=True) if request.query else []
        authorization = [v for k, v in request.headers if k == "authorization"]
        if authorization:
            return _header_claim(authorization[0], request.headers, query)
        if any(k == "X-Amz-Signature" for k, _ in query):
            return _query_claim(query)
        raise _error("MissingAuthenticationToken", "Request is missing Authentication Token")

    def _check_scope(self, claim: _Claim) -> None:
        if claim.service != self._service:
            raise _error("SignatureDoesNotMatch",
                         f"Credential should be scoped to correct service: '{self._service}'. ")
        if claim.terminator != "aws4_request":
            raise _error("SignatureDoesNotMatch", "Credential should be scoped with a valid terminator: "
                         f"'aws4_request', not '{claim.terminator}'. ")
        if claim.scope_date != claim.timestamp[:8]:
            raise _error("SignatureDoesNotMatch", "Date in Credential scope does not match YYYYMMDD from ISO-8601 "
                         f"version of date from HTTP: '{claim.scope_date}' != '{claim.timestamp[:8]}', from "
                         f"'{claim.timestamp}'.")

    def _check_time(self, claim: _Claim) -> None:
        signed_at = claim.signed_at
        now = datetime.fromtimestamp(self._now(), UTC)
        stamp = now.strftime(SIGV4_TIMESTAMP)
        if claim.expires is not None:
            if now > signed_at + timedelta(seconds=claim.expires):
                raise _error("RequestExpired", f"Request has expired. Timestamp date is {claim.timestamp}; "
                             f"it expired after {claim.expires} seconds.")
        elif signed_at < now - MAX_SKEW:
            raise _error("SignatureDoesNotMatch", f"Signature expired: {claim.timestamp} is now earlier than "
                         f"{(now - MAX_SKEW).strftime(SIGV4_TIMESTAMP)} ({stamp} - 15 min.)")
        if signed_at > now + MAX_SKEW:
            raise _error("SignatureDoesNotMatch", f"Signature not yet current: {claim.timestamp} is still later than "
                         f"{(now + MAX_SKEW).strftime(SIGV4_TIMESTAMP)} ({stamp} + 15 min.)")

    # --- the signature botocore computes ---

    def _expected_signature(self, request: HttpRequest, claim: _Claim, key: AccessKey) -> str:
        signed = HTTPHeaders()
        for name in claim.signed_headers:
            values = [v for k, v in request.headers if k == name]
            if not values:
                raise _error("SignatureDoesNotMatch", f"The header {name!r} is signed but not in the request. "
                             + _MISMATCH)
            for value in values:
                signed[name] = value
        body_hash = signed.get("x-amz-content-sha256")
        if body_hash is not None and body_hash != hashlib.sha256(request.body).hexdigest():
            raise _error("SignatureDoesNotMatch", "The x-amz-content-sha256 header does not match the body. "
                         + _MISMATCH)
        # The host is in the signed headers; the URL is only read for its path.
        aws_request = AWSRequest(method=request.method, url=f"http://localhost{request.path}",
                                 data=request.body, params=cast(Any, claim.query))  # pairs: names may repeat
        aws_request.context["timestamp"] = claim.timestamp
        signer = _Signer(key, claim, signed, request.body, self._signing_keys)
        canonical = signer.canonical_request(aws_request)
        return str(signer.signature(signer.string_to_sign(aws_request, canonical), aws_request))


def _scope(credential: str) -> tuple[str, str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise _error("IncompleteSignature", f"Credential should have 5 parts separated by '/': '{credential}'")
    return parts[0], parts[1], parts[2], parts[3], parts[4]


def _header_claim(value: str, headers: Sequence[tuple[str, str]], query: list[tuple[str, str]]) -> _Claim:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _error("IncompleteSignature", f"Unsupported AWS 'algorithm': '{algorithm}'. Use {ALGORITHM}.")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, _, field_value = item.strip().partition("=")
        fields[name] = field_value
    missing = [f"Authorization header requires '{name}' parameter."
               for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
    signed_at = _header_time(headers)
    if signed_at is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing:
        raise _error("IncompleteSignature", " ".join(missing))
    assert signed_at is not None
    key_id, date, region, service, terminator = _scope(fields["Credential"])
    return _Claim(key_id, date, region, service, terminator, fields["SignedHeaders"].split(";"),
                  fields["Signature"], signed_at.strftime(SIGV4_TIMESTAMP), signed_at, None, query)


def _header_time(headers: Sequence[tuple[str, str]]) -> datetime | None:
    for name, value in headers:
        if name == "x-amz-date":
            return _parse_timestamp(value)
    for name, value in headers:
        if name == "date":
            try:
                return parsedate_to_datetime(value).astimezone(UTC)
            except (TypeError, ValueError):
                return None
    return None


_TIMESTAMP = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")


def _parse_timestamp(value: str) -> datetime | None:
    """A SIGV4_TIMESTAMP (20240102T030405Z) as a UTC datetime; None if it is not one. By hand:
    strptime costs more than the rest of a verification."""
    m = _TIMESTAMP.fullmatch(value)
    if m is None:
        return None
    try:
        year, month, day, hour, minute, second = (int(g) for g in m.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def _query_claim(query: list[tuple[str, str]]) -> _Claim:
    params = {name: value for name, value in query if name.startswith("X-Amz-")}
    missing = [name for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders",
                                 "X-Amz-Expires") if not params.get(name)]
    if missing:
        raise _error("IncompleteSignature", "AWS query-string parameters missing: " + ", ".join(missing) + ".")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise _error("IncompleteSignature", f"Unsupported AWS 'algorithm': '{params['X-Amz-Algorithm']}'.")
    signed_at = _parse_timestamp(params["X-Amz-Date"])
    if signed_at is None:
        raise _error("IncompleteSignature", f"X-Amz-Date must be in the ISO8601 format: '{params['X-Amz-Date']}'.")
    expires = params["X-Amz-Expires"]
    if not expires.isdigit() or not 0 < int(expires) <= MAX_EXPIRES:
        raise _error("IncompleteSignature", f"X-Amz-Expires must be a number of seconds from 1 to {MAX_EXPIRES}.")
    key_id, date, region, service, terminator = _scope(params["X-Amz-Credential"])
    signed_query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
    return _Claim(key_id, date, region, service, terminator, params["X-Amz-SignedHeaders"].split(";"),
                  params["X-Amz-Signature"], params["X-Amz-Date"], signed_at, int(expires), signed_query)
