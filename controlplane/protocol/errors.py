"""Errors the Query API returns, named after the model's error shapes or AWS's common errors.

A handler raises a generated class, `CacheClusterNotFoundFault("...")` (controlplane/model/errors.py,
one `ModelError` per error shape of the model); code, HTTP status and Sender/Receiver are looked
up from the model when the error is written, never typed by hand. Code that builds an error from
data (the parser) raises `ServiceError(name, message)`.
Errors that every Query API can return but no service model lists (a missing Action, a missing
parameter, ...) come from AWS's "Common Errors" documentation and live in `COMMON_ERRORS`.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from controlplane.protocol.model import ApiModel


class Resolved(NamedTuple):
    code: str
    http_status: int
    type: str  # "Sender" | "Receiver"


# code -> (HTTP status, sender fault). From AWS's "Common Errors" page for Query APIs
# (e.g. the RDS/ElastiCache API references). InvalidParameterValue / InvalidParameterCombination
# are not here: the ElastiCache model has them as shapes (InvalidParameter*Exception).
COMMON_ERRORS: dict[str, tuple[int, bool]] = {
    # What Query APIs (IAM, STS, RDS, ElastiCache) answer when IAM refuses a call: "User: <arn>
    # is not authorized to perform: <action> on resource: <arn>".
    "AccessDenied": (403, True),
    "AccessDeniedException": (400, True),
    "IncompleteSignature": (400, True),
    "InternalFailure": (500, False),
    "InvalidAction": (400, True),
    "InvalidClientTokenId": (403, True),
    "InvalidQueryParameter": (400, True),
    "MalformedQueryString": (404, True),
    "MissingAction": (400, True),
    "MissingAuthenticationToken": (403, True),
    "MissingParameter": (400, True),
    "NotAuthorized": (400, True),
    "OptInRequired": (403, True),
    "RequestExpired": (400, True),
    "ServiceUnavailable": (503, False),
    "SignatureDoesNotMatch": (403, True),
    "ThrottlingException": (400, True),
    "ValidationError": (400, True),
    # Ours, not AWS's: an operation the model has and this service does not implement yet.
    # 501 so that clients and people see "not here yet", not a bug in their request.
    "NotImplemented": (501, False),
}


class ServiceError(Exception):
    """An API error. `name` is a model error shape name or a `COMMON_ERRORS` code."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message

    def resolve(self, api: ApiModel) -> Resolved:
        return resolve_error(api, self.name)


class ModelError(ServiceError):
    """An error shape of the model. Its subclasses are generated (controlplane/model/errors.py) and
    carry the model's code, HTTP status and side, so a misspelt error is a type error; the wire
    still takes them from the model through `resolve`, the one lookup every error goes through."""

    shape_name: ClassVar[str]
    code: ClassVar[str]
    http_status: ClassVar[int]
    sender_fault: ClassVar[bool]

    def __init__(self, message: str) -> None:
        super().__init__(self.shape_name, message)


def resolve_error(api: ApiModel, name: str) -> Resolved:
    """Code, status and type for an error name. KeyError for a name that is neither a model
    error shape nor a common error: that is a programming error and must fail loudly."""
    try:
        info = api.error_info(name)
    except KeyError:
        if name not in COMMON_ERRORS:
            raise KeyError(f"unknown error name {name!r}: not an error shape of the model "
                           "and not in COMMON_ERRORS") from None
        status, sender = COMMON_ERRORS[name]
        return Resolved(name, status, "Sender" if sender else "Receiver")
    return Resolved(info.code, info.http_status, info.type)


def internal_failure(request_id: str) -> ServiceError:
    return ServiceError("InternalFailure", f"The request {request_id} failed inside elasticache-local; "
                        "the log has the details.")


def not_implemented(operation_name: str) -> ServiceError:
    return ServiceError(
        "NotImplemented",
        f"The operation {operation_name} is part of the ElastiCache API but is not implemented "
        "by elasticache-local yet.",
    )


def missing_parameter(message: str) -> ServiceError:
    """A required member is missing (AWS's common MissingParameter, 400)."""
    return ServiceError("MissingParameter", message)
