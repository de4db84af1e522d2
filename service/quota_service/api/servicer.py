"""quota.v1.QuotaService: proto messages in, domain calls, proto messages out. Nothing else: every
message is built or read in translate.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from grpc import aio
from quota.v1 import quota_pb2 as pb
from quota.v1 import quota_pb2_grpc as pb_grpc

from quota_service import auth
from quota_service.api import overload
from quota_service.api import translate as t
from quota_service.api.errors import failure_for
from quota_service.app.accounts import Admin
from quota_service.app.alerts import AlertFeed
from quota_service.app.deliveries import Deliveries
from quota_service.app.reserve import HotPath, ReserveRequest
from quota_service.app.subscriptions import BalanceContext, Subscriptions
from quota_service.app.webhooks import Webhooks
from quota_service.catalogue import CatalogueSet
from quota_service.catalogue.top_ups import NotSelfService
from quota_service.domain import validation as v
from quota_service.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    QuotaError,
    StorageError,
)
from quota_service.reports import AccountReports, UsageReports
from quota_service.verify import Verifier

log = logging.getLogger(__name__)
MAX_BATCH_ITEMS = 1000
MAX_STREAM_IN_FLIGHT = 256  # requests of one stream decided at once; the stream waits beyond that


class QuotaServicer(pb_grpc.QuotaServiceServicer):
    def __init__(self, hot: HotPath, admin: Admin, keys: auth.KeyStore | None = None,
                 subscriptions: Subscriptions | None = None, usage: UsageReports | None = None,
                 accounts: AccountReports | None = None, alerts: AlertFeed | None = None,
                 webhooks: Webhooks | None = None, deliveries: Deliveries | None = None,
                 catalogues: CatalogueSet | None = None) -> None:
        self.hot = hot
        self.admin = admin
        self.keys = keys  # None: authentication is off
        self.subscriptions = subscriptions
        self.usage = usage
        self.accounts = accounts
        self.alerts = alerts
        self.webhooks = webhooks
        self.deliveries = deliveries
        self.catalogues = catalogues  # None: the service runs without a catalogue

    def _usage(self) -> UsageReports:
        if self.usage is None:
            raise FailedPrecondition("reports are not available in this server")
        return self.usage

    def _accounts(self) -> AccountReports:
        if self.accounts is None:
            raise FailedPrecondition("reports are not available in this server")
        return self.accounts

    def _subs(self) -> Subscriptions:
        if self.subscriptions is None:
            raise FailedPrecondition("subscriptions are not available in this server")
        return self.subscriptions

    def _webhooks(self) -> Webhooks:
        if self.webhooks is None:
            raise FailedPrecondition("webhook endpoints are not available in this server")
        return self.webhooks

    async def _owner_scope(self, account_id: str, org_id: str) -> None:
        """An account's endpoints need a key for the account; an organization's, one for the whole organization."""
        if account_id:
            await self._scope(account_id)
        elif self.keys is not None:
            self.keys.check_org(auth.current.get(), org_id)

    async def _scope(self, account_id: str, org_id: str = "") -> None:
        """The account named in the request must be within the caller's key's scope."""
        if self.keys is not None:
            await self.keys.check_account(auth.current.get(), account_id, org_id=org_id)

    async def _reserve(self, req: pb.ReserveRequest, mode: str) -> pb.Decision:
        await self._scope(req.account_id)
        d = await self.hot.reserve(req.account_id, req.meter, req.amount, req.idempotency_key, mode=mode,
                                   ttl_ms=req.ttl_ms, dedup_key=req.dedup_key,
                                   dedup_window_s=req.dedup_window_s, attributes=dict(req.attributes),
                                   feature=req.feature)
        return t.decision_pb(d)

    async def Reserve(self, request: pb.ReserveRequest, context: aio.ServicerContext) -> pb.Decision:
        return await self._reserve(request, "reserve")

    async def Consume(self, request: pb.ReserveRequest, context: aio.ServicerContext) -> pb.Decision:
        return await self._reserve(request, "consume")

    async def Check(self, request: pb.ReserveRequest, context: aio.ServicerContext) -> pb.Decision:
        return await self._reserve(request, "check")

    async def Commit(self, request: pb.CommitRequest, context: aio.ServicerContext) -> pb.Decision:
        await self._scope(request.account_id)
        d = await self.hot.commit(request.account_id, request.reservation_id, request.actual_amount,
                                  request.idempotency_key)
        return t.decision_pb(d)

    async def Release(self, request: pb.ReleaseRequest, context: aio.ServicerContext) -> pb.Decision:
        await self._scope(request.account_id)
        d = await self.hot.release(request.account_id, request.reservation_id, request.idempotency_key)
        return t.decision_pb(d)

    async def GetBalance(self, request: pb.GetBalanceRequest, context: aio.ServicerContext) -> pb.Balance:
        await self._scope(request.account_id)
        if request.as_of_ms:
            return t.balance_at_pb(await self._accounts().balance_as_of(request.account_id, request.meter,
                                                                        request.as_of_ms))
        b = await self.hot.balance(request.account_id, request.meter)
        # the policies' thresholds come with the grants from Redis; time zone and cycle from Postgres
        return t.balance_pb(b, await self._balance_context(request.account_id))

    async def _balance_context(self, account_id: str) -> BalanceContext:
        """The time zone and cycle are Postgres's to say; without an answer the balance (from Redis) still stands."""
        if self.subscriptions is not None:
            with contextlib.suppress(StorageError):
                return await self.subscriptions.balance_context(account_id)
        return BalanceContext()

    async def TopUp(self, request: pb.TopUpRequest, context: aio.ServicerContext) -> pb.TopUpResponse:
        await self._scope(request.account_id)
        spec = t.grant_spec(request)
        # a key without the admin role (the self_service role) may only make self-service kinds (QC13)
        try:
            state, replayed = await self.admin.top_up(request.account_id, spec, request.idempotency_key,
                                                      self_service=not auth.current.get().may("admin"))
        except NotSelfService as exc:
            raise auth.PermissionDenied(str(exc)) from exc
        return pb.TopUpResponse(grant=t.grant_pb(state), replayed=replayed)

    async def Adjust(self, request: pb.AdjustRequest, context: aio.ServicerContext) -> pb.TopUpResponse:
        await self._scope(request.account_id)
        state, replayed = await self.admin.adjust(request.account_id, request.grant_id, request.amount,
                                                  request.reason, request.idempotency_key)
        return pb.TopUpResponse(grant=t.grant_pb(state), replayed=replayed)

    async def CreateAccount(self, request: pb.CreateAccountRequest, context: aio.ServicerContext) -> pb.Account:
        await self._scope(request.account_id, org_id=request.org_id)
        info = await self.admin.create_account(request.account_id, request.idempotency_key,
                                               org_id=request.org_id, time_zone=request.time_zone,
                                               policies=t.policies_from_pb(request.policies))
        return t.account_pb(info)

    async def SetAccountStatus(self, request: pb.SetAccountStatusRequest,
                               context: aio.ServicerContext) -> pb.Account:
        await self._scope(request.account_id)
        status = t.STATUS_FROM_PB.get(request.status)
        if status is None:
            raise InvalidArgument("status", "must be ACTIVE, SUSPENDED or EXPIRED")
        return t.account_pb(await self.admin.set_status(request.account_id, status, request.idempotency_key))

    async def ChangeOwner(self, request: pb.ChangeOwnerRequest, context: aio.ServicerContext) -> pb.Account:
        await self._scope(request.account_id)
        return t.account_pb(await self.admin.change_owner(request.account_id, request.owner_id,
                                                          request.idempotency_key))

    async def SetBillingContacts(self, request: pb.SetBillingContactsRequest,
                                 context: aio.ServicerContext) -> pb.Account:
        await self._scope(request.account_id)
        return t.account_pb(await self.admin.set_billing_contacts(request.account_id, list(request.emails),
                                                                  request.language, request.idempotency_key))

    async def CreateWebhookEndpoint(self, request: pb.CreateWebhookEndpointRequest,
                                    context: aio.ServicerContext) -> pb.CreateWebhookEndpointResponse:
        hooks = self._webhooks()
        if bool(request.account_id) == bool(request.org_id):
            raise InvalidArgument("account_id", "give exactly one of account_id (an account's endpoint) and org_id "
                                                "(an organization's)")
        await self._owner_scope(request.account_id, request.org_id)
        return t.create_webhook_endpoint_pb(await hooks.create(
            request.account_id, request.org_id, request.url, list(request.event_types), request.description,
            request.idempotency_key))

    async def ListWebhookEndpoints(self, request: pb.ListWebhookEndpointsRequest,
                                   context: aio.ServicerContext) -> pb.ListWebhookEndpointsResponse:
        hooks = self._webhooks()
        if request.account_id or request.org_id:
            await self._owner_scope(request.account_id, request.org_id)
        elif self.keys is not None and "*" not in auth.current.get().accounts:
            raise auth.PermissionDenied("account_id: listing every endpoint needs a key for every account")
        return t.webhook_endpoints_pb(await hooks.list_endpoints(request.account_id, request.org_id,
                                                                 request.page_size, request.page_token))

    async def SetWebhookEndpointEnabled(self, request: pb.SetWebhookEndpointEnabledRequest,
                                        context: aio.ServicerContext) -> pb.SetWebhookEndpointEnabledResponse:
        return t.webhook_enabled_pb(await self._webhooks().set_enabled(
            request.endpoint_id, request.enabled, request.idempotency_key, self._owner_scope))

    async def RotateWebhookSecret(self, request: pb.RotateWebhookSecretRequest,
                                  context: aio.ServicerContext) -> pb.RotateWebhookSecretResponse:
        return t.rotate_webhook_secret_pb(await self._webhooks().rotate(
            request.endpoint_id, t.grace_seconds(request), request.idempotency_key, self._owner_scope))

    def _deliveries(self) -> Deliveries:
        if self.deliveries is None:
            raise FailedPrecondition("deliveries are not available in this server")
        return self.deliveries

    async def ListDeliveries(self, request: pb.ListDeliveriesRequest,
                             context: aio.ServicerContext) -> pb.ListDeliveriesResponse:
        return t.deliveries_pb(await self._deliveries().list(request.endpoint_id, request.account_id,
                                                             request.page_size, request.page_token,
                                                             self._owner_scope))

    async def ReplayDeliveries(self, request: pb.ReplayDeliveriesRequest,
                               context: aio.ServicerContext) -> pb.ReplayDeliveriesResponse:
        done = await self._deliveries().replay(request.delivery_id, request.endpoint_id, request.since_event_id,
                                               request.idempotency_key, self._owner_scope)
        return pb.ReplayDeliveriesResponse(deliveries=done.deliveries, replayed=done.replayed)

    async def DeleteWebhookEndpoint(self, request: pb.DeleteWebhookEndpointRequest,
                                    context: aio.ServicerContext) -> pb.DeleteWebhookEndpointResponse:
        replayed = await self._webhooks().delete(request.endpoint_id, request.idempotency_key, self._owner_scope)
        return t.webhook_deleted_pb(request.endpoint_id, replayed)

    async def ExtendSubscription(self, request: pb.ExtendSubscriptionRequest,
                                 context: aio.ServicerContext) -> pb.Subscription:
        await self._scope(request.account_id)
        return t.subscription_pb(await self._subs().extend(request.account_id, request.days,
                                                           request.idempotency_key))

    async def Subscribe(self, request: pb.SubscribeRequest, context: aio.ServicerContext) -> pb.Subscription:
        await self._scope(request.account_id)
        info = await self._subs().subscribe(request.account_id, request.product, request.plan,
                                            request.idempotency_key, interval=request.interval,
                                            starts_at_ms=request.starts_at_ms, packs=dict(request.packs))
        return t.subscription_pb(info)

    async def ChangePlan(self, request: pb.ChangePlanRequest, context: aio.ServicerContext) -> pb.Subscription:
        await self._scope(request.account_id)
        when = t.WHEN_FROM_PB.get(request.when, "")
        info = await self._subs().change_plan(request.account_id, request.plan, request.idempotency_key, when=when,
                                              interval=request.interval, packs=dict(request.packs))
        return t.subscription_pb(info)

    async def GetSubscription(self, request: pb.GetSubscriptionRequest,
                              context: aio.ServicerContext) -> pb.Subscription:
        await self._scope(request.account_id)
        return t.subscription_pb(await self._subs().get(request.account_id))

    async def ListUsage(self, request: pb.ListUsageRequest, context: aio.ServicerContext) -> pb.UsagePage:
        await self._scope(request.filter.account_id)
        return t.usage_page_pb(await self._usage().page(t.usage_filter(request.filter), request.page_size,
                                                        request.page_token))

    async def ExportUsage(self, request: pb.ExportUsageRequest,
                          context: aio.ServicerContext) -> AsyncIterator[pb.ExportChunk]:
        await self._scope(request.filter.account_id)
        async for chunk in self._usage().export(t.usage_filter(request.filter), request.attribute_columns,
                                                raw=request.raw):
            yield t.csv_chunk_pb(chunk)

    async def GetTrend(self, request: pb.GetTrendRequest, context: aio.ServicerContext) -> pb.Trend:
        await self._scope(request.account_id)
        return t.trend_pb(await self._usage().trend(t.trend_query(request)))

    async def ListTransactions(self, request: pb.ListTransactionsRequest,
                               context: aio.ServicerContext) -> pb.TransactionPage:
        await self._scope(request.account_id)
        return t.transaction_page_pb(await self._accounts().transactions(t.transaction_query(request)))

    async def GetStatement(self, request: pb.GetStatementRequest, context: aio.ServicerContext) -> pb.Statement:
        await self._scope(request.account_id)
        return t.statement_pb(await self._accounts().statement(request.account_id, request.cycle))

    async def ListCatalogue(self, request: pb.ListCatalogueRequest,
                            context: aio.ServicerContext) -> pb.ListCatalogueResponse:
        v.ident("product", request.product, required=False)
        found = self.catalogues.catalogues if self.catalogues is not None else {}
        if request.product and request.product not in found:
            raise NotFound("product", f"no product {request.product!r} in the catalogue "
                                      f"(products: {', '.join(sorted(found)) or 'none'})")
        return t.catalogue_pb([found[p] for p in sorted(found) if not request.product or p == request.product])

    async def ListAccounts(self, request: pb.ListAccountsRequest, context: aio.ServicerContext) -> pb.AccountPage:
        if self.keys is not None:
            self.keys.check_org(auth.current.get(), request.org_id)
        return t.account_page_pb(await self._accounts().accounts(request.org_id, request.page_size,
                                                                 request.page_token))

    async def WatchAlerts(self, request: pb.WatchAlertsRequest,
                          context: aio.ServicerContext) -> AsyncIterator[pb.AlertEvent]:
        if self.alerts is None:
            raise FailedPrecondition("alerts are not available in this server")
        if request.account_id:
            await self._scope(request.account_id)
        elif self.keys is not None:
            self.keys.check_org(auth.current.get(), request.org_id)
        async for event in self.alerts.watch(t.watch_alerts(request)):
            yield t.alert_event_pb(event)

    async def Verify(self, request: pb.VerifyRequest, context: aio.ServicerContext) -> AsyncIterator[pb.VerifyPage]:
        """N4: the ledger against the Postgres projection and Redis, page by page; Redis repaired by a rebuild."""
        v.ident("account_id", request.account_id, required=False)
        v.ident("after_account_id", request.after_account_id, required=False)
        if not 0 <= request.page_size <= 1000:
            raise InvalidArgument("page_size", "must be 1..1000 (0 = 100)")
        if request.account_id:
            await self._scope(request.account_id)
        elif self.keys is not None and "*" not in auth.current.get().accounts:
            raise auth.PermissionDenied("account_id: checking every account needs a key for every account")
        verifier = Verifier(self.admin.ledger, self.admin.rebuilder.store, self.admin.rebuilder, self.admin.clock)
        async for page in verifier.pages(request.account_id, page_size=request.page_size or 100,
                                         after=request.after_account_id):
            yield t.verify_page_pb(page)

    async def _requests(self, items: list[tuple[pb.ReserveRequest, int]],
                        charge: bool = False) -> list[ReserveRequest | BaseException]:
        """Validate and authorize each item on its own; a bad item becomes its own error. charge: a stream's
        items, each charged to the caller's budget (an item past it is RESOURCE_EXHAUSTED)."""
        out: list[ReserveRequest | BaseException] = []
        for req, mode in items:
            try:
                if charge:
                    overload.charge_item()
                name = t.MODES.get(mode)
                if name is None:
                    raise InvalidArgument("mode", "must be RESERVE, CONSUME or CHECK")
                await self._scope(req.account_id)
                out.append(self.hot.reserve_request(
                    req.account_id, req.meter, req.amount, req.idempotency_key, mode=name, ttl_ms=req.ttl_ms,
                    dedup_key=req.dedup_key, dedup_window_s=req.dedup_window_s, attributes=dict(req.attributes),
                    feature=req.feature))
            except QuotaError as exc:
                out.append(exc)
        return out

    async def _decide_items(self, items: list[tuple[pb.ReserveRequest, int]], tags: list[int],
                            charge: bool = False) -> list[pb.ItemResult]:
        try:
            results = await self.hot.reserve_many(await self._requests(items, charge))
        except QuotaError as exc:  # the whole group failed (a backend is down): every item says so
            results = [exc] * len(items)
        out = []
        for res, tag in zip(results, tags, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, QuotaError):
                    log.error("internal error in a batch item", exc_info=res)
                out.append(pb.ItemResult(error=t.item_error_pb(failure_for(res)), tag=tag))
            else:
                out.append(pb.ItemResult(decision=t.decision_pb(res), tag=tag))
        return out

    async def ReserveBatch(self, request: pb.ReserveBatchRequest,
                           context: aio.ServicerContext) -> pb.ReserveBatchResponse:
        n = len(request.items)
        if n == 0:
            raise InvalidArgument("items", "at least one item is required")
        if n > MAX_BATCH_ITEMS:
            raise OutOfRange("items", f"at most {MAX_BATCH_ITEMS} per call, got {n}")
        results = await self._decide_items([(item, request.mode) for item in request.items], list(range(n)))
        return pb.ReserveBatchResponse(results=results)

    async def ReserveStream(self, request_iterator: AsyncIterator[pb.StreamReserveRequest],
                            context: aio.ServicerContext) -> AsyncIterator[pb.ItemResult]:
        # Requests that arrive while a group is being decided form the next group (like group commit):
        # under load a stream is decided in large groups, one script call per account per group.
        inbox: asyncio.Queue[pb.StreamReserveRequest | None] = asyncio.Queue(MAX_STREAM_IN_FLIGHT)
        out: asyncio.Queue[pb.ItemResult | None] = asyncio.Queue(MAX_BATCH_ITEMS)  # bounded: a caller not reading stalls

        async def read() -> None:
            try:
                async for req in request_iterator:
                    await inbox.put(req)
            finally:
                await inbox.put(None)

        async def decide() -> None:
            try:
                ended = False
                while not ended:
                    first = await inbox.get()
                    group = [] if first is None else [first]
                    ended = first is None
                    while not ended and not inbox.empty() and len(group) < MAX_BATCH_ITEMS:
                        nxt = inbox.get_nowait()
                        if nxt is None:
                            ended = True
                        else:
                            group.append(nxt)
                    if group:
                        for result in await self._decide_items([(r.item, r.mode) for r in group],
                                                               [r.tag for r in group], charge=True):
                            await out.put(result)
            finally:
                await out.put(None)

        tasks = [asyncio.create_task(read()), asyncio.create_task(decide())]
        try:
            while (result := await out.get()) is not None:
                yield result
            for t in tasks:  # a request that could not be read (malformed bytes) fails the stream
                if t.done() and not t.cancelled() and (exc := t.exception()) is not None:
                    raise exc
        finally:
            for t in tasks:
                t.cancel()
