"""Load generation: closed-loop callers, an open-loop Poisson generator, and the measured window.

A phase runs its callers through a warm-up, then a measured window (CPU sampled at both edges,
every reply checked), then stops them and waits for what is in flight. Only completions inside the
window count; latencies are those of the requests that completed in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc import aio

from tests.perf.procs import CpuDelta, Sampler


class BadReply(Exception):
    """A reply that arrived but is not the expected one (e.g. DENIED while there is quota)."""


class Abort(Exception):
    """The scenario cannot run (e.g. the RPC is UNIMPLEMENTED): stop it and report why."""


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


@dataclass
class Result:
    key: str
    label: str
    ok: int = 0  # requests (or items) answered as expected inside the window
    calls: int = 0  # calls completed inside the window (== ok for unary)
    window_s: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: Counter[str] = field(default_factory=Counter)
    cpu: CpuDelta | None = None
    components: tuple[str, ...] = ("service", "redis", "postgres")  # CPU columns that apply
    aborted: str = ""
    lag: dict[str, float] | None = None  # ledger commit lag, ms
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    def pct(self, q: float) -> float:
        return percentile(sorted(self.latencies), q) * 1000

    def cpu_ms_per_req(self, component: str) -> float | None:
        if self.cpu is None or not self.ok or component not in (*self.components, "loadgen", "h2load"):
            return None
        return getattr(self.cpu, component) * 1000 / self.ok

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key, "label": self.label, "ok": self.ok, "calls": self.calls,
            "window_s": round(self.window_s, 3), "rate_per_s": round(self.rate, 1),
            "errors": dict(self.errors), "aborted": self.aborted, "ledger_lag_ms": self.lag, **self.extra,
        }
        if self.latencies:
            out.update({f"p{int(q * 100)}_ms": round(self.pct(q), 3) for q in (0.5, 0.95, 0.99)})
        if self.cpu is not None:
            out["cpu_s"] = {k: round(getattr(self.cpu, k), 3) for k in
                            ("wall", "service", "service_sys", "redis", "postgres", "loadgen", "h2load", "machine",
                             "other")}
            out["cpu_ms_per_req"] = {c: round(v, 4) for c in (*self.components, "loadgen", "h2load")
                                     if (v := self.cpu_ms_per_req(c)) is not None}
        return out


def rpc_error_name(exc: aio.AioRpcError) -> str:
    return exc.code().name


Hook = Callable[[], Awaitable[Any]]


class Phase:
    """One measured scenario: warm-up, window, drain. Callers report through ok()/error()."""

    def __init__(self, result: Result, sampler: Sampler, *, warmup: float, duration: float,
                 on_start: Hook | None = None, on_end: Hook | None = None) -> None:
        self.result = result
        self.sampler = sampler
        self.warmup = warmup
        self.duration = duration
        self.on_start = on_start
        self.on_end = on_end
        self.recording = False
        self.stopping = False
        self._aborted = asyncio.Event()
        self.marks: tuple[Any, Any] = (None, None)

    def ok(self, latency_s: float, n: int = 1) -> None:
        if self.recording:
            self.result.ok += n
            self.result.calls += 1
            self.result.latencies.append(latency_s)

    def error(self, reason: str, n: int = 1, *, force: bool = False) -> None:
        if self.recording or force:
            self.result.errors[reason] += n

    def abort(self, reason: str) -> None:
        if not self.result.aborted:
            self.result.aborted = reason
        self._aborted.set()

    def handle(self, exc: BaseException, *, force: bool = False) -> None:
        """Count a failed call (inside the window, or always with force); UNIMPLEMENTED aborts."""
        if isinstance(exc, Abort):
            self.abort(str(exc))
            return
        if isinstance(exc, aio.AioRpcError) and exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            self.abort(f"UNIMPLEMENTED: {exc.details() or ''}".strip())
        self.error(_reason(exc), force=force)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless aborted; False when aborted."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._aborted.wait(), seconds)
        return not self._aborted.is_set()

    async def run(self, tasks: list[asyncio.Task[Any]], *, drain_s: float = 15.0) -> Result:
        """Time the window around already-started callers, then stop and drain them."""
        try:
            if await self._sleep(self.warmup):
                start_mark = await self.on_start() if self.on_start else None
                a = await self.sampler.snap()
                t0 = time.perf_counter()
                self.recording = True
                await self._sleep(self.duration)
                self.recording = False
                t1 = time.perf_counter()
                b = await self.sampler.snap()
                end_mark = await self.on_end() if self.on_end else None
                self.marks = (start_mark, end_mark)
                self.result.window_s = t1 - t0
                self.result.cpu = self.sampler.delta(a, b, t1 - t0)
        finally:
            self.recording = False
            self.stopping = True
            _, pending = await asyncio.wait(tasks, timeout=drain_s) if tasks else (set(), set())
            for t in pending:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
        if self.result.aborted:
            self.result.window_s = 0.0
        return self.result


Call = Callable[[int], Awaitable[int]]  # one request by caller i; returns the items answered as expected


async def closed_loop(phase: Phase, call: Call, concurrency: int) -> Result:
    """`concurrency` callers, each sending its next request when the previous one is answered."""

    async def caller(i: int) -> None:
        while not phase.stopping:
            t0 = time.perf_counter()
            try:
                n = await call(i)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                phase.handle(exc)
                if phase.result.aborted:
                    return
                continue
            phase.ok(time.perf_counter() - t0, n)

    tasks = [asyncio.create_task(caller(i)) for i in range(concurrency)]
    return await phase.run(tasks)


async def open_loop(phase: Phase, call: Call, rate: float, *, max_outstanding: int = 20_000,
                    seed: int = 7) -> Result:
    """Poisson arrivals at `rate` per second, each sent whether or not earlier ones were answered.

    Latency is measured from the moment a request is sent. How late the generator sent requests
    against the Poisson schedule is kept as schedule_lag (if it is large, the generator, not the
    service, was short of CPU); latency from the scheduled time is kept as well.
    """
    rnd = random.Random(seed)
    outstanding: set[asyncio.Task[None]] = set()
    lags: list[float] = []
    from_schedule: list[float] = []
    dropped = 0
    counter = 0

    async def one(i: int, scheduled: float, recorded: bool) -> None:
        sent = time.perf_counter()
        try:
            n = await call(i)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            phase.handle(exc, force=recorded)
            return
        done = time.perf_counter()
        if recorded:
            phase.result.ok += n
            phase.result.calls += 1
            phase.result.latencies.append(done - sent)
            from_schedule.append(done - scheduled)
            lags.append(sent - scheduled)

    async def generator() -> None:
        nonlocal dropped, counter
        next_t = time.perf_counter()
        while not phase.stopping:
            next_t += rnd.expovariate(rate)
            delay = next_t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if phase.stopping:
                break
            if len(outstanding) >= max_outstanding:
                if phase.recording:
                    dropped += 1
                continue
            counter += 1
            t = asyncio.create_task(one(counter, next_t, phase.recording))
            outstanding.add(t)
            t.add_done_callback(outstanding.discard)

    async def drain() -> None:
        await generator()
        if outstanding:
            await asyncio.wait(list(outstanding), timeout=15)

    result = await phase.run([asyncio.create_task(drain())])
    if dropped:
        result.errors["dropped (too many outstanding)"] += dropped
    lags.sort()
    from_schedule.sort()
    result.extra["offered_rate_per_s"] = round(rate, 1)
    result.extra["schedule_lag_ms"] = {"p50": round(percentile(lags, 0.5) * 1000, 3),
                                       "p99": round(percentile(lags, 0.99) * 1000, 3)}
    result.extra["latency_from_schedule_ms"] = {f"p{int(q * 100)}": round(percentile(from_schedule, q) * 1000, 3)
                                                for q in (0.5, 0.95, 0.99)}
    return result


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return rpc_error_name(exc)
    if isinstance(exc, BadReply):
        return f"bad reply: {exc}"
    return type(exc).__name__
