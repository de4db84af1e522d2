"""One interceptor around every RPC: authenticate, apply the caller's budget, trace, map errors.

Errors map to status codes in one place (the table in api/errors.py, which also gives each its
google.rpc.Status details): invalid input -> INVALID_ARGUMENT, unknown thing ->
NOT_FOUND, state conflict -> FAILED_PRECONDITION, idempotency mismatch -> ALREADY_EXISTS, no or bad
credential -> UNAUTHENTICATED, role or scope -> PERMISSION_DENIED, over budget ->
RESOURCE_EXHAUSTED, backend down -> UNAVAILABLE, anything else -> INTERNAL with a log line (never
UNKNOWN). Bytes that are not a valid request message (truncated, garbage, invalid UTF-8 in a string,
nested too deeply) are INVALID_ARGUMENT too: the interceptor decodes every request itself, so a
decoding error never reaches gRPC's own handling (which would answer UNKNOWN).

Calls over the Connect protocol (the HTTP port, api/connect.py) run through the same `unary_call`
and `streamed_call`, so both protocols share authentication, budgets, deadlines, errors, metrics
and traces.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from grpc_status import rpc_status

from quota_service import auth, deadline, errors, telemetry
from quota_service.api import overload
from quota_service.api.errors import failure_for, status_for, to_rpc_status
from quota_service.api.overload import Budgets

log = logging.getLogger(__name__)
SERVICE = "quota.v1.QuotaService"


class Malformed:
    """What the interceptor's decoder makes of bytes that are not a valid request message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """A request decoder that never raises: a decoding error becomes a Malformed request."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError (truncated, invalid UTF-8, too deep) or anything else
            return Malformed(f"{type(exc).__name__}: {exc}"[:200])

    return decode


def well_formed(request: Any) -> Any:
    """The request, or InvalidArgument when its bytes were not a valid message."""
    if isinstance(request, Malformed):
        raise errors.InvalidArgument("request", f"is not a valid protobuf message of this method ({request.reason})")
    return request


async def well_formed_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        yield well_formed(request)


async def _refuse_malformed(request: Any, context: aio.ServicerContext) -> None:
    if isinstance(request, Malformed):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(errors.InvalidArgument(
            "request", f"is not a valid protobuf message of this method ({request.reason})")))


def guarded(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """Another service's handler (health, reflection) with the tolerant decoder: bytes that are not a
    valid message are INVALID_ARGUMENT there too. Its servicer's methods are coroutines or async
    generators (grpc.aio)."""
    decode, ser = tolerant(handler.request_deserializer), handler.response_serializer
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            await _refuse_malformed(request, context)
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=decode, response_serializer=ser)
    if handler.unary_stream is not None:
        out = handler.unary_stream
        if inspect.isasyncgenfunction(out):
            async def out_gen(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                await _refuse_malformed(request, context)
                async for item in out(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(out_gen, request_deserializer=decode, response_serializer=ser)

        async def out_writes(request: Any, context: aio.ServicerContext) -> Any:  # writes with context.write
            await _refuse_malformed(request, context)
            return await out(request, context)

        return grpc.unary_stream_rpc_method_handler(out_writes, request_deserializer=decode, response_serializer=ser)
    if handler.stream_stream is not None:
        both = handler.stream_stream

        async def stream(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
            async def checked() -> AsyncIterator[Any]:
                async for request in requests:
                    await _refuse_malformed(request, context)
                    yield request

            async for item in both(checked(), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=decode, response_serializer=ser)
    return handler


class ServiceInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, keys: auth.KeyStore | None, budgets: Budgets, *, require_deadline: bool = False,
                 max_call_s: float = 30.0) -> None:
        self.keys = keys  # None: authentication is off (local development only)
        self.budgets = budgets
        self.require_deadline = require_deadline
        self.max_call_s = max_call_s

    def _time_limit(self, context: aio.ServicerContext) -> float:
        """Seconds the call may run: its own deadline, capped by the server's limit."""
        remaining = context.time_remaining()
        if remaining is None:
            if self.require_deadline:
                raise errors.InvalidArgument("deadline", "every call must set a deadline (grpc-timeout; "
                                                        "connect-timeout-ms over Connect)")
            return self.max_call_s
        return min(float(remaining), self.max_call_s)

    async def _principal(self, context: aio.ServicerContext, method: str) -> auth.Principal:
        role = auth.METHOD_ROLES.get(method, "admin")  # an RPC without a role of its own is the admin's
        if self.keys is None:
            return auth.ANONYMOUS
        token = ""
        for k, v in context.invocation_metadata() or ():
            if k == "authorization" and isinstance(v, str) and v.startswith("Bearer "):
                token = v[7:].strip()
        if not token:
            raise auth.Unauthenticated("authorization: an API key is required (metadata 'authorization: Bearer qk_...')")
        principal = await self.keys.verify(token)
        if not principal.may(role):
            needs = f"{role!r} or 'admin'" if role != "admin" else "'admin'"
            raise auth.PermissionDenied(f"this API key lacks the role needed for {method} ({needs})")
        return principal

    async def _caller(self, context: aio.ServicerContext, method: str) -> str:
        """Authenticate; the caller's name for its budget (its key, or its address without keys)."""
        principal = await self._principal(context, method)
        auth.current.set(principal)
        return principal.key_id if self.keys is not None else (context.peer() or "peer").rsplit(":", 1)[0]

    async def _fail(self, context: aio.ServicerContext, method: str, exc: BaseException) -> None:
        """The exception as the call's status, with its google.rpc.Status details (api/errors.py)."""
        failure = failure_for(exc)
        if failure.code == grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=exc, extra={"method": method})
        await context.abort_with_status(rpc_status.to_status(to_rpc_status(failure)))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None:
            return handler
        if service != SERVICE:
            return guarded(handler)  # health, reflection: open to probes
        decode = tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self.unary_call(method, handler.unary_unary), request_deserializer=decode,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            inner_out = handler.unary_stream

            async def out_stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                async for item in self.streamed_call(method, lambda: inner_out(well_formed(request), context), context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(out_stream, request_deserializer=decode,
                                                        response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
                async for item in self.streamed_call(
                        method, lambda: inner_stream(well_formed_stream(requests), context), context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=decode,
                                                         response_serializer=handler.response_serializer)
        return handler

    def unary_call(self, method: str, inner: Callable[[Any, aio.ServicerContext], Awaitable[Any]]
               ) -> Callable[[Any, aio.ServicerContext], Awaitable[Any]]:
        """A unary call with authentication, its budget (one token per item), a time limit, a trace and errors.

        The one call core of both surfaces: a gRPC call, or a Connect call (api/connect.py, whose
        context answers the same questions: metadata, time remaining, peer, abort)."""

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            start = time.perf_counter()
            caller = None
            outcome = _Outcome()
            telemetry.rpc_started(method)
            with telemetry.rpc_span(method, context.invocation_metadata()) as span:
                try:
                    limit = self._time_limit(context)
                    deadline.set_within(limit)  # the hot path answers UNAVAILABLE before it (H7)
                    name = await self._caller(context, method)
                    self.budgets.acquire(name, max(1, len(getattr(request, "items", ()))))
                    caller = name
                    try:
                        async with asyncio.timeout(limit):
                            return await inner(well_formed(request), context)
                    except TimeoutError as exc:
                        raise errors.DeadlineExceeded(f"the call took longer than its {limit:.3f} s") from exc
                except BaseException as exc:
                    await self._ended(context, method, exc, outcome)
                    raise
                finally:
                    if caller is not None:
                        self.budgets.release(caller)
                    outcome.unless_set(context)
                    telemetry.end_rpc_span(span, outcome.code, outcome.message)
                    telemetry.record_rpc(method, outcome.code, time.perf_counter() - start)

        return unary

    async def _ended(self, context: aio.ServicerContext, method: str, exc: BaseException, outcome: _Outcome) -> None:
        """Note how a call ended in `outcome`; an error of ours becomes its status (this raises AbortError).

        A servicer that aborted the call itself (OUT_OF_RANGE for an oversized batch) ends with
        AbortError: its code is the context's, not OK. A call the client cancelled, or whose deadline
        passed, is cancelled under us (CancelledError): CANCELLED."""
        if isinstance(exc, aio.AbortError | grpc.RpcError):
            outcome.code, outcome.message = _context_status(context)
            return
        if not isinstance(exc, Exception):
            outcome.code = grpc.StatusCode.CANCELLED
            return
        outcome.code, outcome.message = status_for(exc), str(exc)
        await self._fail(context, method, exc)

    async def streamed_call(self, method: str, answers: Callable[[], AsyncIterator[Any]],
                        context: aio.ServicerContext) -> AsyncIterator[Any]:
        """A streaming call's answers, with the same authentication, trace and errors; the stream takes
        one of the caller's stream slots (not a unary one), and its items are charged as they come."""
        start = time.perf_counter()
        caller = None
        outcome = _Outcome()
        telemetry.rpc_started(method)
        with telemetry.rpc_span(method, context.invocation_metadata()) as span:
            try:
                name = await self._caller(context, method)
                self.budgets.open_stream(name)
                caller = name
                overload.current.set((self.budgets, name))
                async for item in answers():
                    yield item
            except BaseException as exc:
                await self._ended(context, method, exc, outcome)
                raise
            finally:
                if caller is not None:
                    self.budgets.close_stream(caller)
                outcome.unless_set(context)
                telemetry.end_rpc_span(span, outcome.code, outcome.message)
                telemetry.record_rpc(method, outcome.code, time.perf_counter() - start)


class _Outcome:
    """How a call ended: its status code and the message the caller got."""

    __slots__ = ("code", "message")

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
        self.message = ""

    def unless_set(self, context: aio.ServicerContext) -> None:
        """A handler that set a status with context.set_code() and returned: that is the call's status."""
        if self.code == grpc.StatusCode.OK and context.code() not in (None, 0, grpc.StatusCode.OK):
            self.code, self.message = _context_status(context)


def _context_status(context: aio.ServicerContext) -> tuple[grpc.StatusCode, str]:
    """The status a handler set on the context before aborting (UNKNOWN if it set none)."""
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        code = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    details = context.details()
    return code, details.decode() if isinstance(details, bytes) else str(details or "")
