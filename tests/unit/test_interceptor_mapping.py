"""api/interceptors.py: each domain error maps to one status code; anything else is INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from quota_service import errors
from quota_service.api.interceptors import status_for

CASES: list[tuple[BaseException, grpc.StatusCode]] = [
    (errors.InvalidArgument("amount", "must be greater than 0"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("account_id", "unknown account 'x'"), grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition("reservation_id: already committed"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.IdempotencyMismatch("k1"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unavailable("redis down"), grpc.StatusCode.UNAVAILABLE),
    (errors.StorageError("postgres: connection refused"), grpc.StatusCode.UNAVAILABLE),
]

UNKNOWN: list[BaseException] = [ValueError("x"), KeyError("k"), RuntimeError("boom"), AssertionError(),
                                errors.QuotaError("base class"), errors.SettingsError("QUOTA_PORT")]


@pytest.mark.parametrize(("exc", "code"), CASES, ids=lambda x: type(x).__name__ if isinstance(x, Exception) else "")
def test_status_for_domain_errors(exc: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(exc) == code


@pytest.mark.parametrize("exc", UNKNOWN, ids=lambda x: type(x).__name__)
def test_status_for_anything_else_is_internal(exc: BaseException) -> None:
    assert status_for(exc) == grpc.StatusCode.INTERNAL


def test_idempotency_mismatch_names_the_field() -> None:
    assert str(errors.IdempotencyMismatch("k1")).startswith("idempotency_key: 'k1'")


def test_subclasses_keep_their_parents_code() -> None:
    class HoldExpired(errors.FailedPrecondition):
        pass

    class RedisDown(errors.StorageError):
        pass

    assert status_for(HoldExpired("reservation_id: expired")) == grpc.StatusCode.FAILED_PRECONDITION
    assert status_for(RedisDown("redis: refused")) == grpc.StatusCode.UNAVAILABLE


def test_every_domain_error_has_a_code() -> None:
    # a new QuotaError subclass that nobody mapped would reach callers as INTERNAL
    kinds = [k for k in vars(errors).values()
             if isinstance(k, type) and issubclass(k, errors.QuotaError) and k is not errors.QuotaError]
    assert len(kinds) >= 6
    for kind in kinds:
        assert status_for(kind.__new__(kind)) != grpc.StatusCode.INTERNAL, kind.__name__
