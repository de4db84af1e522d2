"""api/errors.py: every error the service raises has a row in the one error table (a status code and
an ErrorInfo reason), and each becomes a google.rpc.Status with the same code and message as before
plus its details."""

from __future__ import annotations

import importlib
import pkgutil
import re

import grpc
import pytest
import quota_service
from google.rpc import error_details_pb2
from quota_service import auth, errors
from quota_service.api import errors as table
from quota_service.api.overload import ResourceExhausted
from quota_service.catalogue.top_ups import NotSelfService
from quota_service.domain.clock import ClockUntrusted


def every_quota_error() -> set[type[errors.QuotaError]]:
    """Every subclass of QuotaError defined anywhere in the service."""
    for module in pkgutil.walk_packages(quota_service.__path__, "quota_service."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: set[type[errors.QuotaError]] = set()
    todo = list(errors.QuotaError.__subclasses__())
    while todo:
        kind = todo.pop()
        if kind.__module__.startswith("quota_service."):
            found.add(kind)
        todo += kind.__subclasses__()
    return found


def test_every_exception_class_maps_to_a_reason() -> None:
    kinds = every_quota_error()
    assert {errors.InvalidArgument, errors.StorageError, auth.Unauthenticated, ResourceExhausted,
            NotSelfService, ClockUntrusted} <= kinds
    for kind in kinds:
        rule = table.rule_for(kind.__new__(kind))
        assert rule is not table.INTERNAL_RULE, kind.__name__
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", rule.reason), rule.reason
        assert rule.meaning.strip(), kind.__name__


def test_rows_are_distinct_and_none_is_shadowed_by_a_parent() -> None:
    reasons = [r.reason for r in table.RULES]
    assert len(reasons) == len(set(reasons))
    for i, rule in enumerate(table.RULES):
        assert table.rule_for(rule.kind.__new__(rule.kind)) is rule, f"{rule.kind.__name__} is matched by an earlier row"
        assert all(not issubclass(rule.kind, earlier.kind) or rule.kind is earlier.kind
                   for earlier in table.RULES[:i]), rule.kind.__name__


CASES: list[tuple[BaseException, grpc.StatusCode, str, list[tuple[str, str]], dict[str, str]]] = [
    (errors.InvalidArgument("amount", "must be greater than 0"), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD",
     [("amount", "must be greater than 0")], {"field": "amount"}),
    (errors.NotFound("account_id", "unknown account 'x'"), grpc.StatusCode.NOT_FOUND, "NOT_FOUND", [],
     {"field": "account_id"}),
    (errors.FailedPrecondition("reservation_id: already committed"), grpc.StatusCode.FAILED_PRECONDITION,
     "STATE_CONFLICT", [], {}),
    (errors.IdempotencyMismatch("k1", fields=("amount",)), grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_MISMATCH", [],
     {"field": "idempotency_key"}),
    (errors.StorageError("postgres: connection refused"), grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", [], {}),
    (ClockUntrusted("offset unknown"), grpc.StatusCode.UNAVAILABLE, "CLOCK_UNTRUSTED", [], {}),
    (errors.DeadlineExceeded("the call took longer than its 1.000 s"), grpc.StatusCode.DEADLINE_EXCEEDED,
     "DEADLINE_EXCEEDED", [], {}),
    (auth.Unauthenticated("authorization: an API key is required"), grpc.StatusCode.UNAUTHENTICATED,
     "UNAUTHENTICATED", [], {}),
    (auth.PermissionDenied("this API key lacks the role"), grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED",
     [], {}),
    (ResourceExhausted("over budget"), grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED", [], {}),
]


@pytest.mark.parametrize(("exc", "code", "reason", "violations", "metadata"), CASES,
                         ids=lambda x: type(x).__name__ if isinstance(x, Exception) else "")
def test_failure_keeps_code_and_message_and_adds_details(exc: BaseException, code: grpc.StatusCode, reason: str,
                                                         violations: list[tuple[str, str]],
                                                         metadata: dict[str, str]) -> None:
    failure = table.failure_for(exc)
    assert (failure.code, failure.message, failure.reason) == (code, str(exc), reason)
    assert (failure.field_violations, failure.metadata) == (violations, metadata)
    status = table.to_rpc_status(failure)
    assert (status.code, status.message) == (code.value[0], str(exc))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (reason, "quota.v1", metadata)
    bad = [d for d in status.details if d.Is(error_details_pb2.BadRequest.DESCRIPTOR)]
    assert len(bad) == (1 if violations else 0)
    if bad:
        request = error_details_pb2.BadRequest()
        bad[0].Unpack(request)
        assert [(v.field, v.description) for v in request.field_violations] == violations


@pytest.mark.parametrize("exc", [ValueError("secret dsn postgres://u:p@h"), KeyError("k"), errors.QuotaError("base")],
                         ids=lambda x: type(x).__name__)
def test_anything_else_is_internal_without_its_text(exc: BaseException) -> None:
    failure = table.failure_for(exc)
    assert (failure.code, failure.reason, failure.message) == (grpc.StatusCode.INTERNAL, "INTERNAL",
                                                               table.INTERNAL_MESSAGE)
    status = table.to_rpc_status(failure)
    assert str(exc) not in status.SerializeToString().decode("utf-8", "replace")
