"""The one place where protobuf messages of quota.v1 become the service's plain values and back.

Below the API layer everything speaks dataclasses (domain/model.py, reports/model.py, the app
layer's results), so the wire format can change, or a second protocol be added, without touching
a report or a billing rule. Each message has exactly one translator here; the servicer calls them.
Input checks stay with the code that owns the rule (field names in messages follow the proto).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from quota.v1 import quota_pb2 as pb

from quota_service.api.errors import Failure
from quota_service.app.alerts import AlertEvent, WatchAlerts
from quota_service.app.deliveries import DeliveryPage
from quota_service.app.subscriptions import BalanceContext, SubscriptionInfo
from quota_service.app.webhooks import EndpointChange, EndpointPage, EndpointSecret, WebhookEndpoint
from quota_service.catalogue.model import Catalogue, Plan
from quota_service.domain import model
from quota_service.domain import validation as v
from quota_service.domain.events import NOTICE_NONE, NOTICE_RAN_OUT, NOTICE_RUNNING_LOW, notice
from quota_service.errors import InvalidArgument
from quota_service.reports.model import (
    AccountOverview,
    AccountPage,
    BalanceAt,
    CsvChunk,
    PlanChange,
    Statement,
    StatementLine,
    Transaction,
    TransactionPage,
    TransactionQuery,
    Trend,
    TrendQuery,
    UsageFilter,
    UsagePage,
    UsageRow,
    plan_change,
)
from quota_service.verify import VerifyPage

MODES: dict[int, str] = {pb.BATCH_MODE_UNSPECIFIED: "reserve", pb.RESERVE: "reserve", pb.CONSUME: "consume",
                         pb.CHECK: "check"}
STATUS_TO_PB: dict[str, pb.AccountStatus] = {"active": pb.ACTIVE, "suspended": pb.SUSPENDED, "expired": pb.EXPIRED}
STATUS_FROM_PB: dict[pb.AccountStatus, str] = {code: name for name, code in STATUS_TO_PB.items()}
ACTION_TO_PB: dict[str, pb.ExhaustedAction] = {"NONE": pb.EXHAUSTED_ACTION_UNSPECIFIED,
                                               "HANDOFF_TO_AGENT": pb.HANDOFF_TO_AGENT,
                                               "DISABLE_WIDGET": pb.DISABLE_WIDGET}
WHEN_FROM_PB: dict[int, str] = {pb.NOW: "now", pb.AT_CYCLE_END: "cycle_end"}


def status_pb(status: str) -> pb.AccountStatus:
    """An account status as the enum (UNSPECIFIED for a status the API does not name)."""
    return STATUS_TO_PB.get(status, pb.ACCOUNT_STATUS_UNSPECIFIED)


def action_from_pb(value: int, field: str) -> str:
    for name, code in ACTION_TO_PB.items():
        if code == value:
            return name
    raise InvalidArgument(field, "is not a known action")


# -- decisions, balances, grants ------------------------------------------------------------------------


def decision_pb(d: model.Decision) -> pb.Decision:
    return pb.Decision(
        status=pb.GRANTED if d.granted else pb.DENIED,
        reason=pb.DenyReason.Value(d.reason) if d.reason else pb.DENY_REASON_UNSPECIFIED,
        action=ACTION_TO_PB[d.action],
        reservation_id=d.reservation_id,
        amount=d.amount,
        remaining=d.remaining,
        remaining_pct=d.remaining_pct,
        dedup_hit=d.dedup_hit,
        overage_minor=d.overage_minor,
        overage_currency=d.overage_currency,
        alerts=[pb.Alert(meter=a.meter, threshold_pct_left=a.threshold_pct_left) for a in d.alerts],
        parts=[pb.GrantPart(grant_id=p.grant_id, bucket=p.bucket, amount=p.amount) for p in d.parts],
        replayed=d.replayed,
        expires_at_ms=d.expires_at_ms,
    )


def grant_pb(g: model.GrantState) -> pb.GrantBalance:
    return pb.GrantBalance(grant_id=g.grant_id, bucket=g.bucket, source=g.source, priority=g.priority,
                           granted=g.granted, used=g.used, held=g.held, remaining=g.remaining,
                           overdraft_limit=g.overdraft_limit, starts_at_ms=g.starts_at_ms,
                           expires_at_ms=g.expires_at_ms, label=g.label)


_NOTICES = {NOTICE_NONE: pb.NOTICE_UNSPECIFIED, NOTICE_RUNNING_LOW: pb.NOTICE_RUNNING_LOW,
            NOTICE_RAN_OUT: pb.NOTICE_RAN_OUT}


def meters_pb(meters: Iterable[model.BucketTotals],
              thresholds: Mapping[str, Sequence[int]] | None = None) -> list[pb.MeterBalance]:
    """The meters' balances; with the alert thresholds of each meter (its policy), their banners."""
    out = []
    for m in meters:
        mb = pb.MeterBalance(bucket=m.bucket, granted=m.granted, used=m.used, held=m.held, remaining=m.remaining,
                             remaining_pct=m.remaining_pct)
        if thresholds is not None:
            kind, pct = notice(m.granted, m.remaining, thresholds.get(m.bucket, ()))
            mb.notice, mb.notice_threshold_pct_left = _NOTICES[kind], pct
        out.append(mb)
    return out


def balance_pb(b: model.BalanceView, ctx: BalanceContext | None = None) -> pb.Balance:
    """A balance (live, or as of a past time) with the account's time zone and the billing cycle in
    force (0, 0: none, or unknown); each meter with its banner (from its alert thresholds)."""
    ctx = ctx or BalanceContext()
    return pb.Balance(account_id=b.account_id, status=status_pb(b.status), meters=meters_pb(b.meters, b.alert_thresholds),
                      grants=[grant_pb(g) for g in b.grants], as_of_ms=b.as_of_ms,
                      cycle_start_ms=ctx.cycle_start_ms, cycle_end_ms=ctx.cycle_end_ms, time_zone=ctx.time_zone)


def balance_at_pb(b: BalanceAt) -> pb.Balance:
    return balance_pb(b.balance, BalanceContext(b.time_zone, b.cycle_start_ms, b.cycle_end_ms))


def grant_spec(request: pb.TopUpRequest) -> model.GrantSpec:
    """A TopUp's grant: units of a meter or money of a wallet (exactly one)."""
    g = request.grant
    if not request.HasField("grant"):
        raise InvalidArgument("grant", "is required")
    if bool(g.meter) == bool(g.currency):
        raise InvalidArgument("grant", "set exactly one of meter (units) or currency (money)")
    if g.meter:
        bucket = v.ident("grant.meter", g.meter)
    else:
        bucket = model.wallet_bucket(v.currency("grant.currency", g.currency))
    # priority 0 is a priority: unset (None) is the kind's priority, or 100 for an ad-hoc grant
    return model.GrantSpec(bucket=bucket, amount=g.amount, source=g.source,
                           priority=g.priority if g.HasField("priority") else None,
                           overdraft_limit=g.overdraft_limit, starts_at_ms=g.starts_at_ms,
                           expires_at_ms=g.expires_at_ms, label=g.label, grant_id=g.grant_id, kind=g.kind)


# -- accounts and subscriptions -------------------------------------------------------------------------


def policies_from_pb(policies: Iterable[pb.MeterPolicy]) -> list[model.MeterPolicy]:
    return [model.MeterPolicy(meter=p.meter, overage_price_minor=p.overage_price_minor,
                              overage_currency=p.overage_currency,
                              exhausted_action=action_from_pb(p.exhausted_action, f"policies[{i}].exhausted_action"),
                              alert_pct_left=tuple(p.alert_pct_left))
            for i, p in enumerate(policies)]


def account_pb(a: model.AccountInfo) -> pb.Account:
    return pb.Account(
        account_id=a.account_id, org_id=a.org_id, time_zone=a.time_zone, status=status_pb(a.status),
        policies=[pb.MeterPolicy(meter=p.meter, overage_price_minor=p.overage_price_minor,
                                 overage_currency=p.overage_currency,
                                 exhausted_action=ACTION_TO_PB[p.exhausted_action],
                                 alert_pct_left=list(p.alert_pct_left)) for p in a.policies],
        replayed=a.replayed, owner_id=a.owner_id, billing_emails=list(a.billing_emails), language=a.language)


def plan_change_pb(c: PlanChange | None) -> pb.PlanChange | None:
    if c is None:
        return None
    return pb.PlanChange(plan=c.plan, interval=c.interval, packs=dict(c.packs), effective_at_ms=c.effective_at_ms)


def subscription_pb(s: SubscriptionInfo) -> pb.Subscription:
    return pb.Subscription(
        account_id=s.account_id, product=s.product, plan=s.plan, interval=s.interval,
        catalogue_version=s.catalogue_version, catalogue_hash=s.catalogue_hash, packs=dict(s.packs),
        anchor_at_ms=s.anchor_at_ms, cycle=s.cycle, cycle_start_ms=s.cycle_start_ms, cycle_end_ms=s.cycle_end_ms,
        status=s.status, withheld=list(s.withheld), replayed=s.replayed,
        pending_change=plan_change_pb(plan_change(s.pending, s.cycle_end_ms)))


def overview_pb(a: AccountOverview) -> pb.AccountOverview:
    return pb.AccountOverview(
        account_id=a.account_id, org_id=a.org_id, owner_id=a.owner_id, status=status_pb(a.status), product=a.product,
        plan=a.plan, interval=a.interval, cycle_end_ms=a.cycle_end_ms,
        meters=meters_pb(a.meters, a.alert_thresholds),
        next_expiry_ms=a.next_expiry_ms, pending_change=plan_change_pb(a.pending_change))


def account_page_pb(page: AccountPage) -> pb.AccountPage:
    return pb.AccountPage(accounts=[overview_pb(a) for a in page.accounts], next_page_token=page.next_page_token)


# -- usage reports --------------------------------------------------------------------------------------


def usage_filter(f: pb.UsageFilter) -> UsageFilter:
    return UsageFilter(account_id=f.account_id, meter=f.meter, attributes=dict(f.attributes), from_ms=f.from_ms,
                       to_ms=f.to_ms)


def usage_row_pb(r: UsageRow) -> pb.UsageRow:
    return pb.UsageRow(entry_id=r.entry_id, account_id=r.account_id, occurred_at_ms=r.occurred_at_ms, meter=r.meter,
                       bucket=r.bucket, grant_id=r.grant_id, kind=r.kind, amount=r.amount, running_used=r.running_used,
                       attributes=dict(r.attributes), idempotency_key=r.idempotency_key)


def usage_page_pb(page: UsagePage) -> pb.UsagePage:
    return pb.UsagePage(rows=[usage_row_pb(r) for r in page.rows], next_page_token=page.next_page_token)


def csv_chunk_pb(chunk: CsvChunk) -> pb.ExportChunk:
    return pb.ExportChunk(csv=chunk.csv, rows=chunk.rows)


def trend_query(req: pb.GetTrendRequest) -> TrendQuery:
    return TrendQuery(account_id=req.account_id, from_ms=req.from_ms, to_ms=req.to_ms, meter=req.meter,
                      group_by=req.group_by, granularity=req.granularity)


def trend_pb(t: Trend) -> pb.Trend:
    return pb.Trend(time_zone=t.time_zone, series=[
        pb.TrendSeries(meter=s.meter, group=s.group, points=[
            pb.TrendPoint(start_ms=p.start_ms, label=p.label, amount=p.amount, events=p.events) for p in s.points])
        for s in t.series])


# -- transactions and statements ------------------------------------------------------------------------


def transaction_query(req: pb.ListTransactionsRequest) -> TransactionQuery:
    return TransactionQuery(account_id=req.account_id, from_ms=req.from_ms, to_ms=req.to_ms, kinds=tuple(req.kinds),
                            page_size=req.page_size, page_token=req.page_token)


def transaction_pb(t: Transaction) -> pb.Transaction:
    return pb.Transaction(entry_id=t.entry_id, occurred_at_ms=t.occurred_at_ms, kind=t.kind, grant_id=t.grant_id,
                          bucket=t.bucket, amount=t.amount, source=t.source, label=t.label,
                          idempotency_key=t.idempotency_key)


def transaction_page_pb(page: TransactionPage) -> pb.TransactionPage:
    return pb.TransactionPage(transactions=[transaction_pb(t) for t in page.transactions],
                              next_page_token=page.next_page_token)


def statement_line_pb(x: StatementLine) -> pb.StatementLine:
    return pb.StatementLine(bucket=x.bucket, opening=x.opening, granted=x.granted, used=x.used, forfeited=x.forfeited,
                            closing=x.closing, overage_units=x.overage_units, overage_minor=x.overage_minor,
                            overage_currency=x.overage_currency)


def statement_pb(s: Statement) -> pb.Statement:
    return pb.Statement(account_id=s.account_id, product=s.product, plan=s.plan, cycle=s.cycle,
                        cycle_start_ms=s.cycle_start_ms, cycle_end_ms=s.cycle_end_ms, closed=s.closed,
                        lines=[statement_line_pb(x) for x in s.lines],
                        transactions=[transaction_pb(t) for t in s.transactions])


# -- alerts and verification ----------------------------------------------------------------------------


def watch_alerts(req: pb.WatchAlertsRequest) -> WatchAlerts:
    return WatchAlerts(account_id=req.account_id, org_id=req.org_id, after_event_id=req.after_event_id,
                       types=tuple(req.types))


def alert_event_pb(e: AlertEvent) -> pb.AlertEvent:
    """An event as WatchAlerts streams it: the alert fields typed (when the event has them), and the
    whole data as JSON."""
    d = e.data
    return pb.AlertEvent(event_id=e.event_seq, account_id=e.account_id, meter=e.meter,
                         threshold_pct_left=int(d.get("threshold_pct_left", 0)),
                         cycle_start_ms=int(d.get("cycle_start_ms", 0)), occurred_at_ms=e.occurred_at_ms,
                         idempotency_key=str(d.get("idempotency_key", "")), id=e.event_id, type=e.type,
                         org_id=e.org_id, data_json=json.dumps(d, sort_keys=True, separators=(",", ":")))


def verify_page_pb(page: VerifyPage) -> pb.VerifyPage:
    return pb.VerifyPage(
        accounts=len(page.accounts), grants=sum(a.grants for a in page.accounts),
        differences=[pb.VerifyDifference(account_id=d.account_id, grant_id=d.grant_id, store=d.store, field=d.field,
                                         expected=d.expected, actual=d.actual, detail=d.detail, repaired=d.repaired)
                     for d in page.differences],
        in_flight=[a.account_id for a in page.accounts if a.redis == "in_flight"],
        rebuilt=[a.account_id for a in page.accounts if a.redis == "rebuilt"],
        last_account_id=page.last_account_id)


# -- webhook endpoints ---------------------------------------------------------------------------------


def webhook_endpoint_pb(e: WebhookEndpoint) -> pb.WebhookEndpoint:
    """An endpoint, never its secrets (WebhookEndpoint has none)."""
    return pb.WebhookEndpoint(
        endpoint_id=e.endpoint_id, account_id=e.account_id, org_id=e.org_id, url=e.url,
        event_types=list(e.event_types), description=e.description, enabled=e.enabled,
        disabled_reason=e.disabled_reason, created_at_ms=e.created_at_ms, updated_at_ms=e.updated_at_ms,
        previous_secret_until_ms=e.previous_secret_until_ms)


def create_webhook_endpoint_pb(r: EndpointSecret) -> pb.CreateWebhookEndpointResponse:
    return pb.CreateWebhookEndpointResponse(endpoint=webhook_endpoint_pb(r.endpoint), secret=r.secret,
                                            replayed=r.replayed)


def rotate_webhook_secret_pb(r: EndpointSecret) -> pb.RotateWebhookSecretResponse:
    return pb.RotateWebhookSecretResponse(endpoint=webhook_endpoint_pb(r.endpoint), secret=r.secret,
                                          replayed=r.replayed)


def webhook_enabled_pb(r: EndpointChange) -> pb.SetWebhookEndpointEnabledResponse:
    return pb.SetWebhookEndpointEnabledResponse(endpoint=webhook_endpoint_pb(r.endpoint), replayed=r.replayed)


def webhook_endpoints_pb(page: EndpointPage) -> pb.ListWebhookEndpointsResponse:
    return pb.ListWebhookEndpointsResponse(endpoints=[webhook_endpoint_pb(e) for e in page.endpoints],
                                           next_page_token=page.next_page_token)


def deliveries_pb(page: DeliveryPage) -> pb.ListDeliveriesResponse:
    return pb.ListDeliveriesResponse(next_page_token=page.next_page_token, deliveries=[pb.Delivery(
        delivery_id=d.delivery_id, event_id=d.event_id, event_type=d.event_type, account_id=d.account_id,
        channel=d.channel, endpoint_id=d.endpoint_id, recipient=d.recipient, status=d.status,
        attempt_count=d.attempt_count, next_attempt_at_ms=d.next_attempt_at_ms, last_status_code=d.last_status_code,
        last_error=d.last_error, created_at_ms=d.created_at_ms, delivered_at_ms=d.delivered_at_ms,
        attempts=[pb.DeliveryAttempt(attempted_at_ms=a.attempted_at_ms, status_code=a.status_code,
                                     latency_ms=a.latency_ms, response=a.response, error=a.error, outcome=a.outcome)
                  for a in d.attempts]) for d in page.deliveries])


def webhook_deleted_pb(endpoint_id: str, replayed: bool) -> pb.DeleteWebhookEndpointResponse:
    return pb.DeleteWebhookEndpointResponse(endpoint_id=endpoint_id, replayed=replayed)


def grace_seconds(req: pb.RotateWebhookSecretRequest) -> int | None:
    """The request's grace period in seconds; None when it gives none (the default applies)."""
    return req.grace_seconds if req.HasField("grace_seconds") else None


# -- the catalogue ------------------------------------------------------------------------------


def _plan_pb(p: Plan) -> pb.CataloguePlan:
    out = pb.CataloguePlan(
        plan=p.name, title=p.title, kind=p.kind, intervals=list(p.intervals),
        grants=[pb.CataloguePlanGrant(id=g.id, bucket=g.bucket, amount=dict(g.amount), at_cycle_end=g.at_cycle_end,
                                      label=g.label) for g in p.grants],
        one_time_grants=[pb.CataloguePlanGrant(id=g.id, bucket=g.bucket, amount={"once": g.amount}, label=g.label)
                         for g in p.one_time_grants],
        capacity=dict(p.capacity), features=dict(p.features))
    if p.trial is not None:
        out.trial.CopyFrom(pb.CatalogueTrial(meter=p.trial.meter, total=p.trial.total,
                                             duration_days=p.trial.duration_days or 0))
    return out


def catalogue_pb(catalogues: Iterable[Catalogue]) -> pb.ListCatalogueResponse:
    """Each product as it is sold: meters, plans, packs and the wallets' top-up kinds."""
    return pb.ListCatalogueResponse(products=[pb.CatalogueProduct(
        product=c.product, title=c.title, version=c.version, content_hash=c.content_hash,
        meters=[pb.CatalogueMeter(name=m.name, kind=m.kind, unit=m.unit, description=m.description)
                for m in c.meters.values()],
        plans=[_plan_pb(p) for p in c.plans.values()],
        packs=[pb.CataloguePack(pack=k.name, title=k.title, meter=k.meter, amount=dict(k.amount),
                                price_minor=dict(k.price_minor), currency=k.price_currency, recurrence=k.recurrence,
                                plans=list(k.plans), self_service=k.self_service) for k in c.packs.values()],
        top_up_kinds=[pb.CatalogueTopUpKind(kind=u.id, currency=w.currency, min_amount_minor=u.min_amount_minor,
                                            max_amount_minor=u.max_amount_minor, priority=u.priority, label=u.label,
                                            self_service=u.self_service)
                      for w in c.wallets.values() for u in w.top_ups.values()],
    ) for c in catalogues])


def item_error_pb(f: Failure) -> pb.ItemError:
    """A batch or stream item's error: the unary call's code, message, reason and field."""
    return pb.ItemError(code=f.code.value[0], message=f.message, reason=f.reason, field=f.metadata.get("field", ""))
