"""The error table: every error the service reports, as a status code, a message and machine-readable details.

One table maps the service's exceptions to a `Failure`: the gRPC status code and message callers
have always seen, plus an `ErrorInfo` reason (UPPER_SNAKE, domain ``quota.v1``) and, for bad input,
the `BadRequest` field violations. `to_rpc_status` packs them into a ``google.rpc.Status`` that the
gRPC surface sends in the ``grpc-status-details-bin`` trailer (read it with
``grpc_status.rpc_status.from_call``); the Connect surface sends the same details in its error JSON.
Anything not in the table is INTERNAL with a fixed message (the cause goes to the log, never to the
caller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from quota_service import auth, errors
from quota_service.api.overload import ResourceExhausted
from quota_service.catalogue.top_ups import NotSelfService
from quota_service.domain.clock import ClockUntrusted

DOMAIN = "quota.v1"
INTERNAL_MESSAGE = "internal error; the service logged the cause"


@dataclass(frozen=True)
class Failure:
    """How one error reaches a caller, whatever the protocol."""

    code: grpc.StatusCode
    message: str
    reason: str  # ErrorInfo.reason
    field_violations: list[tuple[str, str]] = field(default_factory=list)  # (field, description)
    metadata: dict[str, str] = field(default_factory=dict)  # ErrorInfo.metadata


@dataclass(frozen=True)
class Rule:
    """One row of the table: an exception class, its code, its reason and what it means to a caller."""

    kind: type[BaseException]
    code: grpc.StatusCode
    reason: str
    meaning: str


def _field_of(exc: BaseException) -> str:
    return str(getattr(exc, "field", "") or "")


def _violations(exc: BaseException) -> list[tuple[str, str]]:
    name = _field_of(exc)
    return [(name, str(getattr(exc, "reason", "") or exc))] if name else []


def _field_metadata(exc: BaseException) -> dict[str, str]:
    name = _field_of(exc)
    return {"field": name} if name else {}


def _idempotency_metadata(exc: BaseException) -> dict[str, str]:
    return {"field": "idempotency_key"}


# First match wins: a subclass's row comes before its parent's.
RULES: list[Rule] = [
    Rule(errors.OutOfRange, grpc.StatusCode.OUT_OF_RANGE, "OUT_OF_RANGE",
         "A value beyond what one call may carry (a batch of more than 1,000 items); BadRequest names "
         "the field and the limit. Nothing was written: split the call."),
    Rule(errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD",
         "A field is missing or malformed; BadRequest names it and says why. Nothing was written."),
    Rule(errors.NotFound, grpc.StatusCode.NOT_FOUND, "NOT_FOUND",
         "An unknown account, meter, grant or reservation; metadata.field names the field."),
    Rule(errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, "STATE_CONFLICT",
         "The request is valid but the current state does not allow it (a hold already resolved, "
         "a commit above what is available)."),
    Rule(errors.IdempotencyMismatch, grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_MISMATCH",
         "The idempotency key was used before for a different request; use a new key."),
    Rule(ClockUntrusted, grpc.StatusCode.UNAVAILABLE, "CLOCK_UNTRUSTED",
         "This replica's clock is not trusted; retry with the same idempotency key (another replica may answer)."),
    Rule(errors.Unavailable, grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE",
         "Redis or Postgres cannot be reached, or the outcome could not be made durable. Never a "
         "denial: retry with the same idempotency key."),
    Rule(errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
         "The call ran past its deadline or the server's cap on a call's duration; retry with the same "
         "idempotency key."),
    Rule(auth.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED",
         "No API key, or one that is unknown, malformed or revoked (send 'authorization: Bearer qk_...')."),
    Rule(NotSelfService, grpc.StatusCode.PERMISSION_DENIED, "NOT_SELF_SERVICE",
         "A self-service key asked for a top-up kind that is not self-service."),
    Rule(auth.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
         "The API key lacks the role for this method, or the account is outside its scope."),
    Rule(ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED",
         "The caller is over its budget (rate, concurrent calls, open streams, look-ups of unknown keys), "
         "or an alert stream fell too far behind; retry after a pause (a stream: reconnect)."),
]

INTERNAL_RULE = Rule(BaseException, grpc.StatusCode.INTERNAL, "INTERNAL",
                     "A fault in the service; it logged the cause. The message never carries it.")

# What each reason carries besides the message: BadRequest field violations, ErrorInfo metadata.
_VIOLATIONS: dict[str, Callable[[BaseException], list[tuple[str, str]]]] = {
    "INVALID_FIELD": _violations, "OUT_OF_RANGE": _violations}
_METADATA: dict[str, Callable[[BaseException], dict[str, str]]] = {
    "INVALID_FIELD": _field_metadata, "OUT_OF_RANGE": _field_metadata, "NOT_FOUND": _field_metadata,
    "IDEMPOTENCY_MISMATCH": _idempotency_metadata,
}


def rule_for(exc: BaseException) -> Rule:
    """The table's row for an exception (INTERNAL_RULE when none matches)."""
    for rule in RULES:
        if isinstance(exc, rule.kind):
            return rule
    return INTERNAL_RULE


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code an exception reaches the caller as."""
    return rule_for(exc).code


def failure_for(exc: BaseException) -> Failure:
    """What the caller gets for an exception: an INTERNAL failure never carries the exception's text."""
    rule = rule_for(exc)
    if rule is INTERNAL_RULE:
        return Failure(rule.code, INTERNAL_MESSAGE, rule.reason)
    violations = _VIOLATIONS[rule.reason](exc) if rule.reason in _VIOLATIONS else []
    metadata = _METADATA[rule.reason](exc) if rule.reason in _METADATA else {}
    return Failure(rule.code, str(exc), rule.reason, violations, metadata)


def to_rpc_status(failure: Failure) -> status_pb2.Status:
    """The failure as a google.rpc.Status: ErrorInfo always, BadRequest when fields were at fault."""
    info = error_details_pb2.ErrorInfo(reason=failure.reason, domain=DOMAIN, metadata=failure.metadata)
    details: list[Message] = [info]
    if failure.field_violations:
        details.append(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=name, description=text)
            for name, text in failure.field_violations]))
    status = status_pb2.Status(code=failure.code.value[0], message=failure.message)
    for message in details:
        status.details.add().Pack(message)
    return status
