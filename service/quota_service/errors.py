"""Domain errors. One interceptor maps each to a gRPC status code (see api/interceptors.py)."""

from __future__ import annotations


class QuotaError(Exception):
    """Base of every error the service reports to a caller."""


class InvalidArgument(QuotaError):
    """Bad input: names the field and the reason. Nothing was written."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class OutOfRange(InvalidArgument):
    """A well-formed value beyond what one call may carry (more than 1,000 batch items)."""


class NotFound(QuotaError):
    """An unknown account, meter or reservation."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class FailedPrecondition(QuotaError):
    """The request is valid but the state does not allow it (hold already resolved, commit above what is available)."""


class IdempotencyMismatch(QuotaError):
    """The idempotency key was used before with different parameters."""

    def __init__(self, key: str, *, first_kind: str = "", fields: tuple[str, ...] = ()) -> None:
        # name what differs when it is known: the first request's kind, or its differing parameters
        if first_kind:
            how = f"for a {first_kind} request"
        elif fields:
            how = (f"with different parameters: {', '.join(fields)} "
                   f"{'differs' if len(fields) == 1 else 'differ'} from the first request")
        else:
            how = "with different parameters"
        super().__init__(f"idempotency_key: {key!r} was already used {how}")


class DeadlineExceeded(QuotaError):
    """The call ran past its deadline (or the server's cap on a call's duration)."""


class Unavailable(QuotaError):
    """A backend (Redis or Postgres) cannot be reached, or the outcome could not be made durable.

    Never a denial: the caller retries with the same idempotency key.
    """


class StorageError(Unavailable):
    """A driver error from Redis or Postgres, wrapped."""


class SettingsError(Exception):
    """A process setting is missing or malformed (raised at start-up)."""
