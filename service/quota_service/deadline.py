"""The current call's deadline, so that the service answers UNAVAILABLE before it rather than
letting the call run into DEADLINE_EXCEEDED (which callers do not retry). Set per call by the
interceptor; read where a call waits on a backend."""

from __future__ import annotations

import asyncio
import contextvars

# event-loop time (loop.time(), seconds) by which the current call must have its answer; None: no limit
current: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def set_within(limit_s: float) -> None:
    """The current call must answer within limit_s seconds from now."""
    current.set(asyncio.get_running_loop().time() + limit_s)


def remaining_s() -> float | None:
    """Seconds left before the current call's deadline (None: it has none)."""
    at = current.get()
    return None if at is None else at - asyncio.get_running_loop().time()
