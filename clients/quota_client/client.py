"""Python client of quota.v1.QuotaService, async (AsyncQuotaClient) and blocking (QuotaClient).

Every mutating call takes an idempotency key, generated once per logical call when not given and
reused on every retry, so a retry never has a second effect. Retries happen on UNAVAILABLE only,
with exponential backoff and jitter, within the call's overall deadline.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc

from quota_client.results import (
    Account,
    AccountPage,
    Balance,
    Decision,
    Grant,
    MeterPolicy,
    Statement,
    Subscription,
    TransactionPage,
    Trend,
    UsagePage,
    VerifyReport,
)

T = TypeVar("T")


class QuotaClientError(Exception):
    """An RPC failed: .code is the gRPC status code, .details the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def new_key() -> str:
    return uuid.uuid4().hex


class AsyncQuotaClient:
    def __init__(self, target: str, *, api_key: str | None = None, timeout_s: float = 2.0, retries: int = 4,
                 backoff_s: float = 0.05, root_certificates: bytes | None = None, tls: bool = False,
                 client_certificate: tuple[bytes, bytes] | None = None, channel: aio.Channel | None = None) -> None:
        """target: "host:port". api_key: "qk_..." (default: env QUOTA_API_KEY).
        timeout_s: overall deadline of one logical call, retries included.
        tls / root_certificates / client_certificate (key PEM, chain PEM): TLS, and mutual TLS."""
        if channel is None:
            if tls or root_certificates or client_certificate:
                private_key, chain = client_certificate or (None, None)
                creds = grpc.ssl_channel_credentials(root_certificates, private_key, chain)
                channel = aio.secure_channel(target, creds)
            else:
                channel = aio.insecure_channel(target)
        self._channel = channel
        token = api_key if api_key is not None else os.environ.get("QUOTA_API_KEY", "")
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._stub = pb_grpc.QuotaServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncQuotaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, fn: Callable[[Any, float], Awaitable[T]], request: Any, timeout_s: float | None) -> T:
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        attempt = 0
        last_unavailable: aio.AioRpcError | None = None
        while True:
            started = time.monotonic()
            try:
                return await fn(request, max(deadline - started, 0.001))
            except aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and last_unavailable is not None:
                    # a retry ran out of time: what the caller needs to know is that the backend is down
                    exc, code = last_unavailable, grpc.StatusCode.UNAVAILABLE
                if code != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise QuotaClientError(code, exc.details() or "") from exc
                last_unavailable = exc
                took = time.monotonic() - started
                delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
                # retry only if an attempt as slow as this one still fits before the deadline
                if time.monotonic() + delay + took >= deadline:
                    raise QuotaClientError(code, exc.details() or "") from exc
                attempt += 1
                await asyncio.sleep(delay)

    def _rpc(self, name: str) -> Callable[[Any, float], Awaitable[Any]]:
        method = getattr(self._stub, name)
        metadata = self._metadata
        return lambda req, timeout: method(req, timeout=timeout, metadata=metadata)

    async def reserve(self, account_id: str, meter: str, amount: int = 1, *, idempotency_key: str | None = None,
                      ttl_ms: int = 0, dedup_key: str = "", dedup_window_s: int = 0,
                      attributes: Mapping[str, str] | None = None, feature: str = "",
                      timeout_s: float | None = None) -> Decision:
        """Hold `amount` units; Commit or Release the returned reservation_id later.

        feature: what the units are for (autopilot, playground ...), when the plan distinguishes them."""
        req = pb.ReserveRequest(account_id=account_id, meter=meter, amount=amount,
                                idempotency_key=idempotency_key or new_key(), ttl_ms=ttl_ms, dedup_key=dedup_key,
                                dedup_window_s=dedup_window_s, attributes=dict(attributes or {}), feature=feature)
        return Decision.from_pb(await self._call(self._rpc("Reserve"), req, timeout_s))

    async def consume(self, account_id: str, meter: str, amount: int = 1, *, idempotency_key: str | None = None,
                      dedup_key: str = "", dedup_window_s: int = 0, attributes: Mapping[str, str] | None = None,
                      feature: str = "", timeout_s: float | None = None) -> Decision:
        """Reserve and commit in one step."""
        req = pb.ReserveRequest(account_id=account_id, meter=meter, amount=amount,
                                idempotency_key=idempotency_key or new_key(), dedup_key=dedup_key,
                                dedup_window_s=dedup_window_s, attributes=dict(attributes or {}), feature=feature)
        return Decision.from_pb(await self._call(self._rpc("Consume"), req, timeout_s))

    async def check(self, account_id: str, meter: str, amount: int = 1, *, dedup_key: str = "",
                    dedup_window_s: int = 0, attributes: Mapping[str, str] | None = None, feature: str = "",
                    timeout_s: float | None = None) -> Decision:
        """Dry run: what Reserve would answer now. Changes nothing."""
        req = pb.ReserveRequest(account_id=account_id, meter=meter, amount=amount, dedup_key=dedup_key,
                                dedup_window_s=dedup_window_s, attributes=dict(attributes or {}), feature=feature)
        return Decision.from_pb(await self._call(self._rpc("Check"), req, timeout_s))

    async def commit(self, account_id: str, reservation_id: str, actual_amount: int, *,
                     idempotency_key: str | None = None, timeout_s: float | None = None) -> Decision:
        req = pb.CommitRequest(account_id=account_id, reservation_id=reservation_id, actual_amount=actual_amount,
                               idempotency_key=idempotency_key or new_key())
        return Decision.from_pb(await self._call(self._rpc("Commit"), req, timeout_s))

    async def release(self, account_id: str, reservation_id: str, *, idempotency_key: str | None = None,
                      timeout_s: float | None = None) -> Decision:
        req = pb.ReleaseRequest(account_id=account_id, reservation_id=reservation_id,
                                idempotency_key=idempotency_key or new_key())
        return Decision.from_pb(await self._call(self._rpc("Release"), req, timeout_s))

    async def balance(self, account_id: str, meter: str = "", *, as_of_ms: int = 0,
                      timeout_s: float | None = None) -> Balance:
        """The live balance, or with as_of_ms the balance at that past time, from the ledger (R6)."""
        req = pb.GetBalanceRequest(account_id=account_id, meter=meter, as_of_ms=as_of_ms)
        return Balance.from_pb(await self._call(self._rpc("GetBalance"), req, timeout_s))

    async def top_up(self, account_id: str, amount: int, *, meter: str = "", currency: str = "", kind: str = "",
                     source: str = "", priority: int | None = None, overdraft_limit: int = 0, starts_at_ms: int = 0,
                     expires_at_ms: int = 0, label: str = "", grant_id: str = "",
                     idempotency_key: str | None = None, timeout_s: float | None = None) -> tuple[Grant, bool]:
        """Add a grant of `amount` units of `meter`, or minor units of `currency`. Returns (grant, replayed).

        `kind` names a top-up kind of the account's catalogue (a wallet's `top_ups`, or a pack for a
        meter): its bounds, priority, overdraft, label and end apply. Without it the grant is ad hoc
        (admin role): `source` "" is topup, `priority` None is 100 (0 is a priority like any other).
        The grant first pays what the meter or wallet owes; only the rest is spendable."""
        spec = pb.GrantSpec(grant_id=grant_id, meter=meter, currency=currency, amount=amount, source=source,
                            priority=priority, overdraft_limit=overdraft_limit, starts_at_ms=starts_at_ms,
                            expires_at_ms=expires_at_ms, label=label, kind=kind)
        req = pb.TopUpRequest(account_id=account_id, grant=spec, idempotency_key=idempotency_key or new_key())
        resp = await self._call(self._rpc("TopUp"), req, timeout_s)
        return Grant.from_pb(resp.grant), resp.replayed

    async def adjust(self, account_id: str, grant_id: str, amount: int, reason: str, *,
                     idempotency_key: str | None = None, timeout_s: float | None = None) -> tuple[Grant, bool]:
        """Correct a grant after the fact: `amount` more used (> 0) or less (< 0). Returns (grant, replayed)."""
        req = pb.AdjustRequest(account_id=account_id, grant_id=grant_id, amount=amount, reason=reason,
                               idempotency_key=idempotency_key or new_key())
        resp = await self._call(self._rpc("Adjust"), req, timeout_s)
        return Grant.from_pb(resp.grant), resp.replayed

    async def create_account(self, account_id: str, *, org_id: str = "", time_zone: str = "UTC",
                             policies: tuple[MeterPolicy, ...] | list[MeterPolicy] = (),
                             idempotency_key: str | None = None, timeout_s: float | None = None) -> Account:
        req = pb.CreateAccountRequest(account_id=account_id, org_id=org_id, time_zone=time_zone,
                                      policies=[p.to_pb() for p in policies],
                                      idempotency_key=idempotency_key or new_key())
        return Account.from_pb(await self._call(self._rpc("CreateAccount"), req, timeout_s))

    async def set_account_status(self, account_id: str, status: str, *, idempotency_key: str | None = None,
                                 timeout_s: float | None = None) -> Account:
        """status: ACTIVE, SUSPENDED or EXPIRED."""
        req = pb.SetAccountStatusRequest(account_id=account_id, status=pb.AccountStatus.Value(status),
                                         idempotency_key=idempotency_key or new_key())
        return Account.from_pb(await self._call(self._rpc("SetAccountStatus"), req, timeout_s))

    async def subscribe(self, account_id: str, product: str, plan: str, *, interval: str = "",
                        starts_at_ms: int = 0, packs: Mapping[str, int] | None = None,
                        idempotency_key: str | None = None, timeout_s: float | None = None) -> Subscription:
        """Subscribe the account to a catalogue plan (interval optional if the plan has one; starts_at_ms 0 = now)."""
        req = pb.SubscribeRequest(account_id=account_id, product=product, plan=plan, interval=interval,
                                  starts_at_ms=starts_at_ms, packs=dict(packs or {}),
                                  idempotency_key=idempotency_key or new_key())
        return Subscription.from_pb(await self._call(self._rpc("Subscribe"), req, timeout_s))

    async def change_plan(self, account_id: str, plan: str, *, when: str, interval: str = "",
                          packs: Mapping[str, int] | None = None, idempotency_key: str | None = None,
                          timeout_s: float | None = None) -> Subscription:
        """Change plan, interval or packs (every pack after the change). when: "NOW" (the current cycle
        ends now; an upgrade) or "AT_CYCLE_END" (a downgrade; asking for the current plan cancels it)."""
        req = pb.ChangePlanRequest(account_id=account_id, plan=plan, interval=interval, packs=dict(packs or {}),
                                   when=pb.ChangeTiming.Value(when), idempotency_key=idempotency_key or new_key())
        return Subscription.from_pb(await self._call(self._rpc("ChangePlan"), req, timeout_s))

    async def extend_subscription(self, account_id: str, days: int, *, idempotency_key: str | None = None,
                                  timeout_s: float | None = None) -> Subscription:
        """Move the current cycle's end (and what expires with it) `days` later (KB5)."""
        req = pb.ExtendSubscriptionRequest(account_id=account_id, days=days,
                                           idempotency_key=idempotency_key or new_key())
        return Subscription.from_pb(await self._call(self._rpc("ExtendSubscription"), req, timeout_s))

    async def change_owner(self, account_id: str, owner_id: str, *, idempotency_key: str | None = None,
                           timeout_s: float | None = None) -> Account:
        """Hand the account to another owner (KB5)."""
        req = pb.ChangeOwnerRequest(account_id=account_id, owner_id=owner_id,
                                    idempotency_key=idempotency_key or new_key())
        return Account.from_pb(await self._call(self._rpc("ChangeOwner"), req, timeout_s))

    async def subscription(self, account_id: str, *, timeout_s: float | None = None) -> Subscription:
        """The account's subscription and current cycle (QuotaClientError NOT_FOUND when it has none)."""
        req = pb.GetSubscriptionRequest(account_id=account_id)
        return Subscription.from_pb(await self._call(self._rpc("GetSubscription"), req, timeout_s))

    # -- reports: typed results (quota_client.results), fields as documented in the .proto ------------

    async def usage(self, account_id: str, *, from_ms: int = 0, to_ms: int = 0, meter: str = "",
                    attributes: Mapping[str, str] | None = None, page_size: int = 0, page_token: str = "",
                    timeout_s: float | None = None) -> UsagePage:
        """One page of usage rows, newest first; pass .next_page_token back for the next (R2)."""
        req = pb.ListUsageRequest(filter=_usage_filter(account_id, from_ms, to_ms, meter, attributes),
                                  page_size=page_size, page_token=page_token)
        return UsagePage.from_pb(await self._call(self._rpc("ListUsage"), req, timeout_s))

    async def export_usage(self, account_id: str, out: Any, *, from_ms: int = 0, to_ms: int = 0, meter: str = "",
                           attributes: Mapping[str, str] | None = None, attribute_columns: tuple[str, ...] = (),
                           timeout_s: float = 300.0) -> int:
        """Stream the usage CSV into the binary file `out`, chunk by chunk; returns the data rows written (R3).
        Not retried: a failed export is started again by the caller."""
        req = pb.ExportUsageRequest(filter=_usage_filter(account_id, from_ms, to_ms, meter, attributes),
                                    attribute_columns=list(attribute_columns))
        rows = 0
        try:
            async for chunk in self._stub.ExportUsage(req, timeout=timeout_s, metadata=self._metadata):
                out.write(chunk.csv)
                rows += chunk.rows
        except aio.AioRpcError as exc:
            raise QuotaClientError(exc.code(), exc.details() or "") from exc
        return rows

    async def trend(self, account_id: str, *, from_ms: int = 0, to_ms: int = 0, meter: str = "", group_by: str = "",
                    granularity: str = "day", timeout_s: float | None = None) -> Trend:
        """Usage per day (or hour) in the account's time zone, zeros included; at most 92 days (R3, QC8)."""
        req = pb.GetTrendRequest(account_id=account_id, from_ms=from_ms, to_ms=to_ms, meter=meter,
                                 group_by=group_by, granularity=granularity)
        return Trend.from_pb(await self._call(self._rpc("GetTrend"), req, timeout_s))

    async def transactions(self, account_id: str, *, from_ms: int = 0, to_ms: int = 0, kinds: tuple[str, ...] = (),
                           page_size: int = 0, page_token: str = "",
                           timeout_s: float | None = None) -> TransactionPage:
        """Top-ups, purchases, cycle grants, carry-overs, forfeits, settlements, with labels (R4)."""
        req = pb.ListTransactionsRequest(account_id=account_id, from_ms=from_ms, to_ms=to_ms, kinds=list(kinds),
                                         page_size=page_size, page_token=page_token)
        return TransactionPage.from_pb(await self._call(self._rpc("ListTransactions"), req, timeout_s))

    async def statement(self, account_id: str, cycle: int = -1, *, timeout_s: float | None = None) -> Statement:
        """What one subscription cycle billed (R5); cycle -1 = the current one."""
        req = pb.GetStatementRequest(account_id=account_id, cycle=cycle)
        return Statement.from_pb(await self._call(self._rpc("GetStatement"), req, timeout_s))

    async def accounts(self, org_id: str, *, page_size: int = 0, page_token: str = "",
                       timeout_s: float | None = None) -> AccountPage:
        """Every account of an organization with plan, status, balance and cycle end (KB5)."""
        req = pb.ListAccountsRequest(org_id=org_id, page_size=page_size, page_token=page_token)
        return AccountPage.from_pb(await self._call(self._rpc("ListAccounts"), req, timeout_s))

    async def verify(self, account_id: str = "", *, page_size: int = 0, after_account_id: str = "",
                     timeout_s: float = 300.0) -> VerifyReport:
        """Consistency check (N4, admin role): every grant of the account (or of every account, streamed in
        pages) recomputed from the ledger and compared with the Postgres projection and with Redis. A
        difference in Redis is repaired by a rebuild (`repaired`); one in Postgres is only reported.
        Not retried: it only reads, and may be run again."""
        req = pb.VerifyRequest(account_id=account_id, page_size=page_size, after_account_id=after_account_id)
        pages = []
        try:
            async for page in self._stub.Verify(req, timeout=timeout_s, metadata=self._metadata):
                pages.append(page)
        except aio.AioRpcError as exc:
            raise QuotaClientError(exc.code(), exc.details() or "") from exc
        return VerifyReport.from_pages(pages)

    async def watch_alerts(self, *, account_id: str = "", org_id: str = "",
                           after_event_id: int = 0) -> AsyncIterator[pb.AlertEvent]:
        """Alert events of an account or an organization: the stored ones after `after_event_id`, then
        new ones as they happen, until the caller stops iterating. To resume after a disconnection,
        pass the last event_id seen (QA6)."""
        req = pb.WatchAlertsRequest(account_id=account_id, org_id=org_id, after_event_id=after_event_id)
        call = self._stub.WatchAlerts(req, metadata=self._metadata)
        try:
            async for event in call:
                yield event
        except aio.AioRpcError as exc:
            raise QuotaClientError(exc.code(), exc.details() or "") from exc
        finally:
            call.cancel()


def _usage_filter(account_id: str, from_ms: int, to_ms: int, meter: str,
                  attributes: Mapping[str, str] | None) -> pb.UsageFilter:
    return pb.UsageFilter(account_id=account_id, from_ms=from_ms, to_ms=to_ms, meter=meter,
                          attributes=dict(attributes or {}))


class QuotaClient:
    """Blocking client: the same calls as AsyncQuotaClient, run on a private event loop."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = self._loop.run_until_complete(self._make(target, kwargs))

    @staticmethod
    async def _make(target: str, kwargs: dict[str, Any]) -> AsyncQuotaClient:
        return AsyncQuotaClient(target, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._async, name)
        if not asyncio.iscoroutinefunction(method):
            raise AttributeError(name)
        return lambda *a, **kw: self._loop.run_until_complete(method(*a, **kw))

    def close(self) -> None:
        self._loop.run_until_complete(self._async.close())
        self._loop.close()

    def __enter__(self) -> QuotaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
