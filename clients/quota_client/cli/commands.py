"""The commands of `quota-cli`: each one's arguments and what it asks of the service."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from quota_client.cli import catalogue, deliveries, streams, webhooks
from quota_client.cli.parse import Builder, duration_ms, pack, pair, when_ms
from quota_client.client import AsyncQuotaClient
from quota_client.results import MeterPolicy

Handler = Callable[[AsyncQuotaClient, argparse.Namespace], Awaitable[Any]]


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", help="idempotency key (default: generated; give one to retry safely)")


def _account(p: argparse.ArgumentParser) -> None:
    p.add_argument("account_id")


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_ms", type=when_ms, default=0, help="start, inclusive (ISO 8601 or ms)")
    p.add_argument("--to", dest="to_ms", type=when_ms, default=0, help="end, exclusive (default: now)")


def _page(p: argparse.ArgumentParser, size: int) -> None:
    p.add_argument("--page-size", type=int, default=size)
    p.add_argument("--page-token", default="", help="the token a previous page printed")


def _attrs(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--attr", type=pair, action="append", default=[], help=f"KEY=VALUE {text} (repeatable)")


# -- accounts and grants ---------------------------------------------------------------------------

def a_create_account(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("--org", default="")
    p.add_argument("--time-zone", default="UTC", help="IANA name, e.g. Asia/Jakarta")
    p.add_argument("--meter", action="append", default=[], help="a meter the account uses (repeatable)")
    _key(p)


async def create_account(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.create_account(a.account_id, org_id=a.org, time_zone=a.time_zone,
                                  policies=[MeterPolicy(m) for m in a.meter], idempotency_key=a.key)


def a_set_status(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("status", type=str.upper, choices=["ACTIVE", "SUSPENDED", "EXPIRED"])
    _key(p)


async def set_status(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.set_account_status(a.account_id, a.status, idempotency_key=a.key)


def a_change_owner(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("owner_id", help="a user id of the platform")
    _key(p)


async def change_owner(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.change_owner(a.account_id, a.owner_id, idempotency_key=a.key)


def a_top_up(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("amount", type=int, help="units, or minor units of --currency")
    p.add_argument("--meter", default="")
    p.add_argument("--currency", default="")
    p.add_argument("--kind", default="", help="a top-up kind of the catalogue (a wallet's top_ups, or a pack)")
    p.add_argument("--source", default="", help="default: topup, or the kind's")
    p.add_argument("--priority", type=int, default=None, help="default: the kind's, or 100 (0 is a priority)")
    p.add_argument("--overdraft-limit", type=int, default=0)
    p.add_argument("--expires", dest="expires_at_ms", type=when_ms, default=0, help="ISO 8601 or ms (default never)")
    p.add_argument("--expires-at-ms", dest="expires_at_ms", type=int, help=argparse.SUPPRESS)
    p.add_argument("--label", default="")
    _key(p)


async def top_up(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    grant, _ = await c.top_up(a.account_id, a.amount, meter=a.meter, currency=a.currency, kind=a.kind, source=a.source,
                              priority=a.priority, overdraft_limit=a.overdraft_limit, expires_at_ms=a.expires_at_ms,
                              label=a.label, idempotency_key=a.key)
    return grant


def a_adjust(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("grant_id")
    p.add_argument("amount", type=int, help="more used (> 0) or less, a refund (< 0)")
    p.add_argument("--reason", required=True)
    _key(p)


async def adjust(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    grant, _ = await c.adjust(a.account_id, a.grant_id, a.amount, a.reason, idempotency_key=a.key)
    return grant


# -- charges ---------------------------------------------------------------------------------------

def _charge(p: argparse.ArgumentParser, *, hold: bool, keyed: bool) -> None:
    _account(p)
    p.add_argument("meter")
    p.add_argument("amount", type=int, nargs="?", default=1)
    _attrs(p, "attribute of the request: room_id, channel, contact_id, category ...")
    p.add_argument("--feature", default="", help="what the units are for (autopilot, playground ...)")
    p.add_argument("--dedup-key", default="", help="charge this business key once per --dedup-window")
    p.add_argument("--dedup-window", type=duration_ms, default=0, help="e.g. 24h (with --dedup-key)")
    if hold:
        p.add_argument("--ttl", type=duration_ms, default=0, help="how long the hold lasts, e.g. 90s (default 60s)")
    if keyed:
        _key(p)


def a_reserve(p: argparse.ArgumentParser) -> None:
    _charge(p, hold=True, keyed=True)


def a_consume(p: argparse.ArgumentParser) -> None:
    _charge(p, hold=False, keyed=True)


def a_check(p: argparse.ArgumentParser) -> None:
    _charge(p, hold=False, keyed=False)


def _charge_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    return dict(attributes=dict(a.attr), feature=a.feature, dedup_key=a.dedup_key, dedup_window_s=a.dedup_window // 1000)


async def reserve(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.reserve(a.account_id, a.meter, a.amount, ttl_ms=a.ttl, idempotency_key=a.key, **_charge_kwargs(a))


async def consume(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.consume(a.account_id, a.meter, a.amount, idempotency_key=a.key, **_charge_kwargs(a))


async def check(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.check(a.account_id, a.meter, a.amount, **_charge_kwargs(a))


def a_commit(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("reservation_id")
    p.add_argument("actual_amount", type=int)
    _key(p)


async def commit(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.commit(a.account_id, a.reservation_id, a.actual_amount, idempotency_key=a.key)


def a_release(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("reservation_id")
    _key(p)


async def release(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.release(a.account_id, a.reservation_id, idempotency_key=a.key)


def a_balance(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("--meter", default="")
    p.add_argument("--as-of", type=when_ms, default=0, help="the balance at this past time, from the ledger")


async def balance(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.balance(a.account_id, a.meter, as_of_ms=a.as_of)


# -- plans -----------------------------------------------------------------------------------------

def a_subscribe(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("product")
    p.add_argument("plan")
    p.add_argument("--interval", default="", help="monthly, quarterly, ... (optional when the plan has one)")
    p.add_argument("--starts", dest="starts_at_ms", type=when_ms, default=0, help="the cycles' anchor (default now)")
    p.add_argument("--pack", type=pack, action="append", default=[], help="NAME=QUANTITY bought with it (repeatable)")
    _key(p)


async def subscribe(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.subscribe(a.account_id, a.product, a.plan, interval=a.interval, starts_at_ms=a.starts_at_ms,
                             packs=dict(a.pack), idempotency_key=a.key)


def a_subscription(p: argparse.ArgumentParser) -> None:
    _account(p)


async def subscription(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.subscription(a.account_id)


def a_change_plan(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("plan")
    p.add_argument("--when", required=True, choices=["now", "cycle-end"],
                   help="now: an upgrade or more packs; cycle-end: a downgrade or fewer packs")
    p.add_argument("--interval", default="")
    p.add_argument("--pack", type=pack, action="append", default=[],
                   help="NAME=QUANTITY, every pack after the change (0 removes one; repeatable)")
    _key(p)


async def change_plan(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    when = "NOW" if a.when == "now" else "AT_CYCLE_END"
    return await c.change_plan(a.account_id, a.plan, when=when, interval=a.interval, packs=dict(a.pack),
                               idempotency_key=a.key)


def a_extend(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("days", type=int, help="1..366")
    _key(p)


async def extend(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.extend_subscription(a.account_id, a.days, idempotency_key=a.key)


# -- reports ---------------------------------------------------------------------------------------

def a_usage(p: argparse.ArgumentParser) -> None:
    _account(p)
    _range(p)
    p.add_argument("--meter", default="")
    _attrs(p, "filter")
    _page(p, 50)


async def usage(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.usage(a.account_id, from_ms=a.from_ms, to_ms=a.to_ms, meter=a.meter, attributes=dict(a.attr),
                         page_size=a.page_size, page_token=a.page_token)


def a_export(p: argparse.ArgumentParser) -> None:
    _account(p)
    _range(p)
    p.add_argument("--meter", default="")
    _attrs(p, "filter")
    p.add_argument("--column", action="append", default=[], help="an attribute to give its own column (repeatable)")
    p.add_argument("--out", default="-", help="the CSV file to write (default '-': standard output)")
    p.add_argument("--raw", action="store_true",
                   help="values exactly as stored; by default a cell that a spreadsheet would run as a formula "
                        "(=, +, -, @ ...) gets a quote in front")


def a_trend(p: argparse.ArgumentParser) -> None:
    _account(p)
    _range(p)
    p.add_argument("--meter", default="")
    p.add_argument("--group-by", default="", help="an attribute to split by, e.g. category or channel")
    p.add_argument("--hourly", action="store_true", help="hours instead of days")


async def trend(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.trend(a.account_id, from_ms=a.from_ms, to_ms=a.to_ms, meter=a.meter, group_by=a.group_by,
                         granularity="hour" if a.hourly else "day")


def a_transactions(p: argparse.ArgumentParser) -> None:
    _account(p)
    _range(p)
    p.add_argument("--kind", action="append", default=[], help="only this kind (repeatable)")
    _page(p, 50)


async def transactions(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.transactions(a.account_id, from_ms=a.from_ms, to_ms=a.to_ms, kinds=tuple(a.kind),
                                page_size=a.page_size, page_token=a.page_token)


def a_statement(p: argparse.ArgumentParser) -> None:
    _account(p)
    p.add_argument("--cycle", type=int, default=-1, help="cycle number (default: the current one)")


async def statement(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.statement(a.account_id, a.cycle)


def a_accounts(p: argparse.ArgumentParser) -> None:
    p.add_argument("org_id")
    _page(p, 100)


async def accounts(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.accounts(a.org_id, page_size=a.page_size, page_token=a.page_token)


def a_alerts(p: argparse.ArgumentParser) -> None:
    p.add_argument("account_id", nargs="?", default="", help="one account (or --org)")
    p.add_argument("--org", default="", help="every account of an organization")
    p.add_argument("--after", type=int, default=0, help="resume after this event id")
    p.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                   help="event type to show, repeatable: alert.triggered (the default), alert.resolved, "
                        "balance.topped_up, cycle.rolled, plan.changed, account.status_changed")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events as they happen")
    p.add_argument("--limit", type=int, default=0, help="stop after this many events")
    p.add_argument("--idle", type=float, default=2.0,
                   help="without --follow: stop once no event came for this many seconds (default 2)")


def a_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("account_id", nargs="?", default="", help="one account (default: every account)")
    p.add_argument("--page-size", type=int, default=0, help="accounts per page (default 100)")
    p.add_argument("--after", default="", help="every account: start after this one")


async def verify(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.verify(a.account_id, page_size=a.page_size, after_account_id=a.after, timeout_s=max(a.timeout, 300.0))


def a_catalogue(p: argparse.ArgumentParser) -> None:
    p.add_argument("product", nargs="?", default="", help="one product, with its packs and top-up kinds")


async def catalogue_products(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await catalogue.products(c, a.product)


def a_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="create|list|revoke ...",
                   help="as `quota-service keys` (needs QUOTA_POSTGRES_DSN)")


# name, help, arguments, handler (None: handled without a connection, or by a stream)
COMMANDS: list[tuple[str, str, Builder, Handler | None]] = [
    ("catalogue", "the catalogue's products and plans, as the service sells them", a_catalogue, catalogue_products),
    ("create-account", "create an account", a_create_account, create_account),
    ("set-status", "set an account's status: active, suspended or expired", a_set_status, set_status),
    ("change-owner", "hand an account to another owner", a_change_owner, change_owner),
    ("subscribe", "put an account on a catalogue plan", a_subscribe, subscribe),
    ("subscription", "an account's subscription and current cycle", a_subscription, subscription),
    ("change-plan", "change plan, interval or packs, now or at the cycle end", a_change_plan, change_plan),
    ("extend", "move the current cycle's end some days later", a_extend, extend),
    ("top-up", "add a grant of units (--meter) or money (--currency, minor units)", a_top_up, top_up),
    ("adjust", "correct a grant after the fact (more used, or a refund)", a_adjust, adjust),
    ("reserve", "hold units", a_reserve, reserve),
    ("consume", "charge units now", a_consume, consume),
    ("check", "what reserve would answer now; changes nothing", a_check, check),
    ("commit", "finalize a reservation with the actual amount", a_commit, commit),
    ("release", "return a reservation", a_release, release),
    ("balance", "balances per meter and per grant", a_balance, balance),
    ("usage", "usage rows, newest first", a_usage, usage),
    ("export", "usage rows as CSV, streamed (progress on stderr)", a_export, streams.export),
    ("trend", "usage per day or hour, with a chart", a_trend, trend),
    ("transactions", "top-ups, cycle grants, settlements, adjustments ...", a_transactions, transactions),
    ("statement", "what a subscription cycle billed", a_statement, statement),
    ("accounts", "every account of an organization", a_accounts, accounts),
    ("alerts", "alert events of an account or organization (--follow: as they happen)", a_alerts, None),
    ("verify", "check that balances equal the ledger (exit 1: a difference)", a_verify, verify),
    ("webhooks", "webhook endpoints: create, list, disable, enable, rotate, delete", webhooks.a_webhooks,
     webhooks.webhooks),
    ("contacts", "set an account's billing contacts (--email) and their language", webhooks.a_contacts,
     webhooks.contacts),
    ("deliveries", "deliveries of events to webhooks and email: list, replay", deliveries.a_deliveries,
     deliveries.deliveries),
    ("keys", "API keys: create, list, revoke (directly in Postgres, as quota-service keys)", a_keys, None),
]
