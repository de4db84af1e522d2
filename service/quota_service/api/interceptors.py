"""One interceptor around every RPC: authenticate, apply the caller's budget, trace, map errors.

Errors map to status codes in one place: invalid input -> INVALID_ARGUMENT, unknown thing ->
NOT_FOUND, state conflict -> FAILED_PRECONDITION, idempotency mismatch -> ALREADY_EXISTS, no or bad
credential -> UNAUTHENTICATED, role or scope -> PERMISSION_DENIED, over budget ->
RESOURCE_EXHAUSTED, backend down -> UNAVAILABLE, anything else -> INTERNAL with a log line (never
UNKNOWN).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from quota_service import auth, errors, telemetry
from quota_service.api.overload import Budgets, ResourceExhausted

log = logging.getLogger(__name__)
SERVICE = "quota.v1.QuotaService"

_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.IdempotencyMismatch, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (auth.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (auth.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
]


def status_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


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
                raise errors.InvalidArgument("deadline", "every call must set a deadline (grpc-timeout)")
            return self.max_call_s
        return min(float(remaining), self.max_call_s)

    async def _principal(self, context: aio.ServicerContext, method: str) -> auth.Principal:
        role = auth.METHOD_ROLES[method]
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
            raise auth.PermissionDenied(f"this API key lacks the {role!r} role needed for {method}")
        return principal

    async def _fail(self, context: aio.ServicerContext, method: str, exc: BaseException) -> None:
        code = status_for(exc)
        if code == grpc.StatusCode.INTERNAL:
            log.error("internal error", exc_info=exc, extra={"method": method})
            await context.abort(code, "internal error; the service logged the cause")
        await context.abort(code, str(exc))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        service, _, method = details.method.lstrip("/").partition("/")
        if handler is None or service != SERVICE or method not in auth.METHOD_ROLES:
            return handler  # health, reflection: open to probes

        async def enter(context: aio.ServicerContext, cost: float) -> tuple[auth.Principal, str]:
            principal = await self._principal(context, method)
            caller = principal.key_id if self.keys is not None else (context.peer() or "peer").rsplit(":", 1)[0]
            self.budgets.acquire(caller, cost)
            auth.current.set(principal)
            return principal, caller

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: aio.ServicerContext) -> Any:
                start = time.perf_counter()
                caller = None
                code = grpc.StatusCode.OK
                with telemetry.rpc_span(method) as span:
                    try:
                        limit = self._time_limit(context)
                        _, caller = await enter(context, max(1, len(getattr(request, "items", ()))))
                        try:
                            async with asyncio.timeout(limit):
                                return await inner(request, context)
                        except TimeoutError as exc:
                            raise errors.DeadlineExceeded(f"the call took longer than its {limit:.3f} s") from exc
                    except (aio.AbortError, grpc.RpcError):
                        raise
                    except Exception as exc:
                        code = status_for(exc)
                        telemetry.mark_error(span, code.name, exc)
                        await self._fail(context, method, exc)
                    finally:
                        if caller is not None:
                            self.budgets.release(caller)
                        telemetry.record_rpc(method, code.name, time.perf_counter() - start)

            return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)

        async def streamed(items: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
            """A streaming call's answers, with the same authentication, budget, trace and errors."""
            start = time.perf_counter()
            caller = None
            code = grpc.StatusCode.OK
            with telemetry.rpc_span(method) as span:
                try:
                    _, caller = await enter(context, 1)
                    async for item in items:
                        yield item
                except (aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    code = status_for(exc)
                    telemetry.mark_error(span, code.name, exc)
                    await self._fail(context, method, exc)
                finally:
                    if caller is not None:
                        self.budgets.release(caller)
                    telemetry.record_rpc(method, code.name, time.perf_counter() - start)

        if handler.unary_stream is not None:
            inner_out = handler.unary_stream

            async def out_stream(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
                async for item in streamed(inner_out(request, context), context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(out_stream, request_deserializer=handler.request_deserializer,
                                                        response_serializer=handler.response_serializer)

        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def stream(request_iterator: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
                async for item in streamed(inner_stream(request_iterator, context), context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(stream, request_deserializer=handler.request_deserializer,
                                                         response_serializer=handler.response_serializer)
        return handler
