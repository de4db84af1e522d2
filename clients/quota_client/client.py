"""Python client of quota.v1.QuotaService, async (AsyncQuotaClient) and blocking (QuotaClient).

Every mutating call takes an idempotency key, generated once per logical call when not given and
reused on every retry, so a retry never has a second effect. Retries happen on UNAVAILABLE only,
with exponential backoff and jitter, within the call's overall deadline. Batches and streams carry a
key per item, so an item answered UNAVAILABLE (or a stream cut by UNAVAILABLE) is sent again safely.

Replicas: a target that resolves to several addresses (`dns:///quota-headless:50051`, or
`ipv4:10.0.0.1:50051,10.0.0.2:50051`) is balanced round robin, per call, through the gRPC service
config (docs/CLIENT.md): gRPC keeps one long-lived connection per address, so without it every call
of a client would go to one replica.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc

from quota_client.results import (
    Account,
    AccountPage,
    Balance,
    CatalogueProduct,
    Decision,
    Grant,
    ItemResult,
    MeterPolicy,
    ReserveItem,
    Statement,
    Subscription,
    TransactionPage,
    Trend,
    UsagePage,
    VerifyReport,
    WebhookEndpoint,
    WebhookEndpointPage,
    WebhookSecret,
)

T = TypeVar("T")


class QuotaClientError(Exception):
    """An RPC failed: .code is the gRPC status code, .details the server's message.

    .reason is the error's ErrorInfo reason (INVALID_FIELD, UNAUTHENTICATED, BACKEND_UNAVAILABLE,
    IDEMPOTENCY_MISMATCH...; "" when the server sent none), .field_violations the (field, description)
    pairs of its BadRequest details: the bad fields, without parsing the message.
    """

    def __init__(self, code: grpc.StatusCode, details: str, *, reason: str = "",
                 field_violations: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.reason = reason
        self.field_violations = field_violations


_STATUS_DETAILS = "grpc-status-details-bin"


def _client_error(code: grpc.StatusCode, exc: aio.AioRpcError) -> QuotaClientError:
    """The client's error for a failed call, with the google.rpc.Status details of its trailer."""
    reason, violations = "", []
    for key, value in exc.trailing_metadata() or ():
        if key != _STATUS_DETAILS or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [(v.field, v.description) for v in bad.field_violations]
    return QuotaClientError(code, exc.details() or "", reason=reason, field_violations=tuple(violations))


def new_key() -> str:
    return uuid.uuid4().hex


BATCH_MODES = ("RESERVE", "CONSUME", "CHECK")
LOAD_BALANCING = ("round_robin", "pick_first")
_UNAVAILABLE = "UNAVAILABLE"


def channel_options(load_balancing: str) -> list[tuple[str, Any]]:
    """The channel's service config: `round_robin` spreads calls over every address the target
    resolves to (one connection each); `pick_first` sends them all to the first that answers."""
    if load_balancing not in LOAD_BALANCING:
        raise ValueError(f"load_balancing must be one of {', '.join(LOAD_BALANCING)}")
    return [("grpc.service_config", json.dumps({"loadBalancingConfig": [{load_balancing: {}}]}))]


def api_key_from_env() -> str:
    """QUOTA_API_KEY, else the text of the file QUOTA_API_KEY_FILE names (a mounted secret), without
    its trailing newline; "" when neither is set."""
    key = os.environ.get("QUOTA_API_KEY", "")
    path = os.environ.get("QUOTA_API_KEY_FILE", "")
    if key or not path:
        return key
    return Path(path).read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")


class AsyncQuotaClient:
    def __init__(self, target: str, *, api_key: str | None = None, timeout_s: float = 2.0, retries: int = 4,
                 backoff_s: float = 0.05, root_certificates: bytes | None = None, tls: bool = False,
                 client_certificate: tuple[bytes, bytes] | None = None, channel: aio.Channel | None = None,
                 load_balancing: str = "round_robin") -> None:
        """target: "host:port", or several replicas: "dns:///name:port" (every address of the name) or
        "ipv4:host1:port1,host2:port2". api_key: "qk_..." (default: env QUOTA_API_KEY, or the file
        QUOTA_API_KEY_FILE names). timeout_s: overall deadline of one logical call, retries included.
        tls / root_certificates / client_certificate (key PEM, chain PEM): TLS, and mutual TLS.
        load_balancing: "round_robin" (each call to the next replica) or "pick_first"."""
        if channel is None:
            options = channel_options(load_balancing)
            if tls or root_certificates or client_certificate:
                private_key, chain = client_certificate or (None, None)
                creds = grpc.ssl_channel_credentials(root_certificates, private_key, chain)
                channel = aio.secure_channel(target, creds, options=options)
            else:
                channel = aio.insecure_channel(target, options=options)
        self._channel = channel
        token = api_key if api_key is not None else api_key_from_env()
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
                    raise _client_error(code, exc) from exc
                last_unavailable = exc
                took = time.monotonic() - started
                delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
                # retry only if an attempt as slow as this one still fits before the deadline
                if time.monotonic() + delay + took >= deadline:
                    raise _client_error(code, exc) from exc
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

    # -- many reservations at once: a key per item, items answered UNAVAILABLE sent again ---------------

    async def reserve_batch(self, items: Iterable[ReserveItem], *, mode: str = "RESERVE",
                            timeout_s: float | None = None) -> list[ItemResult]:
        """Up to 1,000 items in one ReserveBatch; one ItemResult per item, in their order (tag = index).

        mode: RESERVE, CONSUME or CHECK, for every item. A denial is a decided item, a bad item
        carries its own error. Each item keeps its idempotency key (made here when it has none), so
        retrying is safe: the whole call is retried on UNAVAILABLE, and then the items answered
        UNAVAILABLE alone, with backoff, within `timeout_s` (the deadline of the whole batch)."""
        batch_mode = _batch_mode(mode)
        keyed = [(item, item.idempotency_key or (new_key() if mode != "CHECK" else "")) for item in items]
        results: list[ItemResult | None] = [None] * len(keyed)
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        todo = list(range(len(keyed)))
        for attempt in range(self.retries + 1):
            req = pb.ReserveBatchRequest(items=[keyed[i][0].to_pb(keyed[i][1]) for i in todo], mode=batch_mode)
            resp = await self._call(self._rpc("ReserveBatch"), req, max(deadline - time.monotonic(), 0.001))
            for i, r in zip(todo, resp.results, strict=True):
                results[i] = ItemResult.from_pb(r, i, keyed[i][1])
            todo = [i for i in todo if results[i].error == _UNAVAILABLE]  # type: ignore[union-attr]
            delay = self.backoff_s * (2**attempt) * (0.5 + random.random())
            if not todo or time.monotonic() + delay >= deadline:
                break
            await asyncio.sleep(delay)
        return [r for r in results if r is not None]

    async def reserve_stream(self, items: Iterable[ReserveItem] | AsyncIterable[ReserveItem], *,
                             mode: str = "RESERVE", timeout_s: float | None = None) -> AsyncIterator[ItemResult]:
        """One ReserveStream for every item of `items` (read as the stream goes, so it may be endless);
        yields an ItemResult per item as it is answered, not in order: `tag` is the item's position.

        Each item keeps its idempotency key (made here when it has none). An item answered UNAVAILABLE
        is sent again on the stream, and a stream cut by UNAVAILABLE is opened again with the items
        it had not answered, with backoff, at most `retries` times, within `timeout_s` when given (the
        deadline of the whole stream; None = none). The stream ends when every item is answered."""
        feed = _StreamFeed(items, _batch_mode(mode), with_keys=mode != "CHECK")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        feed.start()
        try:
            failures = 0
            while True:
                try:
                    call = self._stub.ReserveStream(feed.requests(), metadata=self._metadata,
                                                    timeout=None if deadline is None else
                                                    max(deadline - time.monotonic(), 0.001))
                    try:
                        async for r in call:
                            result = feed.answered(r)
                            if result.error == _UNAVAILABLE and feed.attempts(r.tag) < self.retries:
                                delay = self._delay(feed.attempts(r.tag) + 1, deadline)
                                if delay is not None:
                                    feed.resend(r.tag, delay)
                                    continue
                            feed.done(r.tag)
                            yield result
                    finally:
                        call.cancel()  # a caller that stopped iterating ends the stream (no-op once it ended)
                    feed.raise_input_error()
                    return
                except aio.AioRpcError as exc:
                    failures += 1
                    delay = self._delay(failures, deadline)
                    code = _stream_code(exc)
                    if code != grpc.StatusCode.UNAVAILABLE or failures > self.retries or delay is None:
                        raise _client_error(code, exc) from exc
                    await asyncio.sleep(delay)
                    feed.reopen()
        finally:
            await feed.close()

    def _delay(self, attempt: int, deadline: float | None) -> float | None:
        """The backoff before retry number `attempt` (1 = the first), None when it would pass the deadline."""
        delay = self.backoff_s * 2.0 ** (attempt - 1) * (0.5 + random.random())
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay

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

    async def set_billing_contacts(self, account_id: str, emails: Iterable[str], *, language: str = "",
                                   idempotency_key: str | None = None, timeout_s: float | None = None) -> Account:
        """The addresses the account's email notices go to (at most 10; none = no email), and their
        language: "en" or "id" ("" keeps the account's)."""
        req = pb.SetBillingContactsRequest(account_id=account_id, emails=list(emails), language=language,
                                           idempotency_key=idempotency_key or new_key())
        return Account.from_pb(await self._call(self._rpc("SetBillingContacts"), req, timeout_s))

    # -- webhook endpoints (admin role; an organization's need a key for the whole organization) -------

    async def create_webhook_endpoint(self, url: str, *, account_id: str = "", org_id: str = "",
                                      event_types: Iterable[str] = (), description: str = "",
                                      idempotency_key: str | None = None,
                                      timeout_s: float | None = None) -> WebhookSecret:
        """An endpoint for the events of an account (account_id) or of every account of an organization
        (org_id): `url` https:// at a public address; event_types empty = every type. The answer holds
        the signing secret, which no other call shows (a replay neither: see WebhookSecret)."""
        req = pb.CreateWebhookEndpointRequest(account_id=account_id, org_id=org_id, url=url,
                                              event_types=list(event_types), description=description,
                                              idempotency_key=idempotency_key or new_key())
        return WebhookSecret.from_pb(await self._call(self._rpc("CreateWebhookEndpoint"), req, timeout_s))

    async def webhook_endpoints(self, *, account_id: str = "", org_id: str = "", page_size: int = 0,
                                page_token: str = "", timeout_s: float | None = None) -> WebhookEndpointPage:
        """A page of the endpoints of an account, of an organization, or (neither) every endpoint; no secrets."""
        req = pb.ListWebhookEndpointsRequest(account_id=account_id, org_id=org_id, page_size=page_size,
                                             page_token=page_token)
        return WebhookEndpointPage.from_pb(await self._call(self._rpc("ListWebhookEndpoints"), req, timeout_s))

    async def set_webhook_endpoint_enabled(self, endpoint_id: str, enabled: bool, *,
                                           idempotency_key: str | None = None,
                                           timeout_s: float | None = None) -> tuple[WebhookEndpoint, bool]:
        """Enable or disable an endpoint (a disabled one gets no new deliveries). Returns (endpoint, replayed)."""
        req = pb.SetWebhookEndpointEnabledRequest(endpoint_id=endpoint_id, enabled=enabled,
                                                  idempotency_key=idempotency_key or new_key())
        resp = await self._call(self._rpc("SetWebhookEndpointEnabled"), req, timeout_s)
        return WebhookEndpoint.from_pb(resp.endpoint), resp.replayed

    async def rotate_webhook_secret(self, endpoint_id: str, *, grace_seconds: int | None = None,
                                    idempotency_key: str | None = None,
                                    timeout_s: float | None = None) -> WebhookSecret:
        """A new signing secret (in this answer only). The old one keeps signing beside it for
        grace_seconds (None: 24 h; 0: it stops at once, for a leaked secret; at most 7 days)."""
        req = pb.RotateWebhookSecretRequest(endpoint_id=endpoint_id, grace_seconds=grace_seconds,
                                            idempotency_key=idempotency_key or new_key())
        return WebhookSecret.from_pb(await self._call(self._rpc("RotateWebhookSecret"), req, timeout_s))

    async def delete_webhook_endpoint(self, endpoint_id: str, *, idempotency_key: str | None = None,
                                      timeout_s: float | None = None) -> bool:
        """Delete an endpoint with its deliveries. Returns replayed."""
        req = pb.DeleteWebhookEndpointRequest(endpoint_id=endpoint_id, idempotency_key=idempotency_key or new_key())
        resp = await self._call(self._rpc("DeleteWebhookEndpoint"), req, timeout_s)
        return bool(resp.replayed)

    # -- deliveries of events (admin role) --------------------------------------------------------------

    async def deliveries(self, *, endpoint_id: str = "", account_id: str = "", page_size: int = 0,
                         page_token: str = "", timeout_s: float | None = None) -> Any:
        """One page of the deliveries of an endpoint or an account (exactly one), oldest first, each with
        its attempts (a ListDeliveriesResponse); pass .next_page_token back for the next."""
        req = pb.ListDeliveriesRequest(endpoint_id=endpoint_id, account_id=account_id, page_size=page_size,
                                       page_token=page_token)
        return await self._call(self._rpc("ListDeliveries"), req, timeout_s)

    async def replay_deliveries(self, *, delivery_id: int = 0, endpoint_id: str = "", since_event_id: str = "",
                                idempotency_key: str | None = None, timeout_s: float | None = None) -> Any:
        """Send one delivery again, or every event of an endpoint from since_event_id on (a
        ReplayDeliveriesResponse: how many deliveries are pending again, and replayed)."""
        req = pb.ReplayDeliveriesRequest(delivery_id=delivery_id, endpoint_id=endpoint_id,
                                         since_event_id=since_event_id, idempotency_key=idempotency_key or new_key())
        return await self._call(self._rpc("ReplayDeliveries"), req, timeout_s)

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
                           raw: bool = False, timeout_s: float = 300.0) -> int:
        """Stream the usage CSV into the binary file `out`, chunk by chunk; returns the data rows written (R3).
        Not retried: a failed export is started again by the caller.

        The CSV is safe to open in a spreadsheet: a text cell beginning with =, +, -, @, a tab or a
        carriage return has a single quote in front (numbers are never changed). raw=True: every value
        exactly as stored, for programs that parse the file."""
        req = pb.ExportUsageRequest(filter=_usage_filter(account_id, from_ms, to_ms, meter, attributes),
                                    attribute_columns=list(attribute_columns), raw=raw)
        rows = 0
        try:
            async for chunk in self._stub.ExportUsage(req, timeout=timeout_s, metadata=self._metadata):
                out.write(chunk.csv)
                rows += chunk.rows
        except aio.AioRpcError as exc:
            raise _client_error(exc.code(), exc) from exc
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

    async def catalogue(self, product: str = "", *, timeout_s: float | None = None) -> tuple[CatalogueProduct, ...]:
        """The catalogue the service sells from: every product (or one), with its meters, plans, packs and
        top-up kinds, as the service has loaded it."""
        req = pb.ListCatalogueRequest(product=product)
        res = await self._call(self._rpc("ListCatalogue"), req, timeout_s)
        return tuple(CatalogueProduct.from_pb(c) for c in res.products)

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
            raise _client_error(exc.code(), exc) from exc
        return VerifyReport.from_pages(pages)

    async def watch_alerts(self, *, account_id: str = "", org_id: str = "", after_event_id: int = 0,
                           types: Sequence[str] = ()) -> AsyncIterator[pb.AlertEvent]:
        """Events of an account or an organization: the stored ones after `after_event_id`, then new
        ones as they happen, until the caller stops iterating. To resume after a disconnection, pass
        the last event_id seen (QA6). `types`: the event types to stream (alert.triggered,
        alert.resolved, balance.topped_up, cycle.rolled, plan.changed, account.status_changed); none:
        alert.triggered. `Event.from_pb(event)` reads one with its data."""
        req = pb.WatchAlertsRequest(account_id=account_id, org_id=org_id, after_event_id=after_event_id,
                                    types=list(types))
        call = self._stub.WatchAlerts(req, metadata=self._metadata)
        try:
            async for event in call:
                yield event
        except aio.AioRpcError as exc:
            raise _client_error(exc.code(), exc) from exc
        finally:
            call.cancel()


# grpcio's asyncio client reports a request write that failed because the connection was lost as
# INTERNAL with this text, made by the client library itself, instead of the call's real status (an
# upstream bug): it is the connection's loss, UNAVAILABLE. An INTERNAL from the server has its own text.
_LOST_WRITE = "Internal error from Core"


def _stream_code(exc: aio.AioRpcError) -> grpc.StatusCode:
    """The status of a failed stream, with a lost connection under a write read as UNAVAILABLE."""
    if exc.code() == grpc.StatusCode.INTERNAL and exc.details() == _LOST_WRITE:
        return grpc.StatusCode.UNAVAILABLE
    return exc.code()


def _batch_mode(mode: str) -> Any:
    if mode not in BATCH_MODES:
        raise ValueError(f"mode must be one of {', '.join(BATCH_MODES)}")
    return pb.BatchMode.Value(mode)


async def _each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class _StreamFeed:
    """The items of one reserve_stream across the calls a retried stream makes: their tags and keys,
    what is queued, what was written on the current call and what is not answered yet.

    The caller's items are read by a task into a bounded queue, so an endless or slow source feeds
    the stream as it goes and a slow server holds the reader back. The queue ends (None) once the
    source is exhausted and every item has its final answer, which half-closes the stream."""

    QUEUE_MAX = 256

    def __init__(self, items: Iterable[ReserveItem] | AsyncIterable[ReserveItem], mode: Any, *,
                 with_keys: bool) -> None:
        self._items, self._mode, self._with_keys = items, mode, with_keys
        self._queue: asyncio.Queue[pb.StreamReserveRequest | None] = asyncio.Queue(self.QUEUE_MAX)
        self._open: dict[int, pb.StreamReserveRequest] = {}  # read, not finally answered
        self._sent: set[int] = set()  # written on the current call, not answered
        self._attempts: dict[int, int] = {}
        self._input_done = False
        self._input_error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._spawn(self._read())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self) -> None:
        tag = 0
        try:
            async for item in _each(self._items):
                key = item.idempotency_key or (new_key() if self._with_keys else "")
                req = pb.StreamReserveRequest(item=item.to_pb(key), mode=self._mode, tag=tag)
                self._open[tag] = req
                await self._queue.put(req)
                tag += 1
        except Exception as exc:  # the caller's source failed: end the stream, then raise it to the caller
            self._input_error = exc
        self._input_done = True
        await self._finish_if_done()

    async def _finish_if_done(self) -> None:
        if self._input_done and (not self._open or self._input_error is not None):
            await self._queue.put(None)

    async def requests(self) -> AsyncIterator[pb.StreamReserveRequest]:
        """The request side of one call."""
        while (req := await self._queue.get()) is not None:
            self._sent.add(req.tag)
            yield req

    def answered(self, r: Any) -> ItemResult:
        self._sent.discard(r.tag)
        return ItemResult.from_pb(r, r.tag, self._open[r.tag].item.idempotency_key)

    def attempts(self, tag: int) -> int:
        return self._attempts.get(tag, 0)

    def done(self, tag: int) -> None:
        del self._open[tag]
        if not self._open and self._input_done:
            self._spawn(self._finish_if_done())

    def resend(self, tag: int, delay_s: float) -> None:
        """Send an item again (with its key) after `delay_s`, on the stream open by then."""
        self._attempts[tag] = self.attempts(tag) + 1

        async def later() -> None:
            await asyncio.sleep(delay_s)
            await self._queue.put(self._open[tag])
        self._spawn(later())

    def reopen(self) -> None:
        """A new call follows a broken one: what was written on it and not answered is sent again."""
        for tag in sorted(self._sent):
            self._spawn(self._queue.put(self._open[tag]))
        self._sent.clear()

    def raise_input_error(self) -> None:
        if self._input_error is not None:
            raise self._input_error

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


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

    def reserve_stream(self, items: Iterable[ReserveItem], *, mode: str = "RESERVE",
                       timeout_s: float | None = None) -> Iterator[ItemResult]:
        """AsyncQuotaClient.reserve_stream as an iterator. `items` is read on the client's event loop
        while the caller waits for the next result: a list, or a generator that does not block."""
        return self._iterate(self._async.reserve_stream(items, mode=mode, timeout_s=timeout_s))

    def watch_alerts(self, *, account_id: str = "", org_id: str = "", after_event_id: int = 0,
                     types: Sequence[str] = ()) -> Iterator[Any]:
        """AsyncQuotaClient.watch_alerts as an iterator: the stored events after `after_event_id`, then
        new ones as they happen (the iterator waits for them); stop iterating (or close()) to end it."""
        return self._iterate(self._async.watch_alerts(account_id=account_id, org_id=org_id,
                                                      after_event_id=after_event_id, types=types))

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator of the async client one item at a time on the private loop; leaving
        the loop early (break, an exception, garbage collection) closes the stream."""
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                self._loop.run_until_complete(aclose())

    def close(self) -> None:
        self._loop.run_until_complete(self._async.close())
        self._loop.close()

    def __enter__(self) -> QuotaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
