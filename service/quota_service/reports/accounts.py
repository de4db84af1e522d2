"""Balance as of a past time (R6), transactions (R4), statements per cycle (R5) and the
organization's account overview (KB5), from the ledger.

Each report reads one consistent snapshot of Postgres (a read-only REPEATABLE READ transaction), so
rows committed while it runs never show half. The arithmetic is in accounts_calc.py, the SQL in
accounts_sql.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from quota.v1 import quota_pb2 as pb

from quota_service.catalogue import CatalogueSet
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.model import GrantState, bucket_totals
from quota_service.errors import FailedPrecondition, InvalidArgument, NotFound
from quota_service.reports import accounts_sql as sql
from quota_service.reports import cursor
from quota_service.reports.accounts_calc import (
    Flow,
    GrantInfo,
    Overage,
    in_cycle,
    statement_lines,
    transaction_amount,
)
from quota_service.storage.postgres import PostgresLedger

MAX_KINDS = 32
_STATUS_TO_PB = {"active": pb.ACTIVE, "suspended": pb.SUSPENDED, "expired": pb.EXPIRED}


def _grant_pb(g: GrantState) -> pb.GrantBalance:
    return pb.GrantBalance(grant_id=g.grant_id, bucket=g.bucket, source=g.source, priority=g.priority,
                           granted=g.granted, used=g.used, held=g.held, remaining=g.remaining,
                           overdraft_limit=g.overdraft_limit, starts_at_ms=g.starts_at_ms,
                           expires_at_ms=g.expires_at_ms, label=g.label)


def _meters_pb(grants: list[GrantState], now_ms: int, known: Iterable[str] = ()) -> list[pb.MeterBalance]:
    return [pb.MeterBalance(bucket=m.bucket, granted=m.granted, used=m.used, held=m.held, remaining=m.remaining,
                            remaining_pct=m.remaining_pct) for m in bucket_totals(grants, now_ms, known)]


def _transaction_pb(r: asyncpg.Record, overage_labels: Mapping[str, str] | None = None) -> pb.Transaction:
    label = r["label"]
    if r["kind"] == "charge":  # money a charge took from a wallet, labelled like the plan's overage (TA8)
        label = (overage_labels or {}).get(r["meter"], "") or r["meter"]
    return pb.Transaction(entry_id=r["entry_id"], occurred_at_ms=r["at_ms"], kind=r["kind"], grant_id=r["grant_id"],
                          bucket=r["bucket"],
                          amount=transaction_amount(r["kind"], r["d_granted"], r["d_used"], r["amount"]),
                          source=r["source"], label=label, idempotency_key=r["idempotency_key"])


def _subtract_holds(states: dict[str, list[int]], holds: list[asyncpg.Record]) -> None:
    """Holds past their time count as returned, whether or not the sweeper has written their rows."""
    for h in holds:
        for part in h["rows"] or ():
            states.setdefault(part["g"], [0, 0, 0])[2] -= int(part["a"])


async def _grants(conn: asyncpg.Connection, account_id: str) -> dict[str, GrantInfo]:
    out = {}
    for r in await conn.fetch(sql.GRANTS, account_id):
        # every grant is made with a ledger row; one without would exist from its start
        created = r["created_ms"] if r["created_ms"] is not None else r["starts_at_ms"]
        out[r["grant_id"]] = GrantInfo(r["grant_id"], r["bucket"], r["source"], r["label"], r["priority"],
                                       r["starts_at_ms"], r["expires_at_ms"], r["overdraft_limit"], created)
    return out


async def _states_at(conn: asyncpg.Connection, account_id: str, cut_ms: int, *, inclusive: bool,
                     created_ms: int, now_ms: int) -> dict[str, list[int]]:
    """Each grant's [granted, used, held] over the rows stamped before cut_ms (or at it, inclusive).

    Read from whichever end of the account's history is nearer the cut, so the cost follows the
    distance to it, not the size of the ledger (N5)."""
    backward = now_ms - cut_ms < cut_ms - created_ms
    if backward:
        query = sql.STATES_BACKWARD_INCL if inclusive else sql.STATES_BACKWARD_EXCL
    else:
        query = sql.STATES_FORWARD_INCL if inclusive else sql.STATES_FORWARD_EXCL
    states = {r["grant_id"]: [r["granted"], r["used"], r["held"]] for r in await conn.fetch(query, account_id, cut_ms)}
    _subtract_holds(states, await conn.fetch(sql.DUE_HOLDS_INCL if inclusive else sql.DUE_HOLDS_EXCL,
                                             account_id, cut_ms))
    return states


@dataclass(frozen=True)
class _Cycle:
    number: int
    start_ms: int
    end_ms: int
    product: str
    plan: str


class AccountReports:
    def __init__(self, ledger: PostgresLedger, clock: Clock, catalogues: CatalogueSet | None,
                 tokens: cursor.PageTokens) -> None:
        self.ledger = ledger
        self.clock = clock
        self.catalogues = catalogues
        self.tokens = tokens

    async def _read(self, fn: Any) -> Any:
        """Run `fn(conn)` in one read-only snapshot. Domain errors are returned by `fn`, not raised in
        it: an exception inside would cost the pool its connection (see PostgresLedger._on_connection)."""

        async def run(conn: asyncpg.Connection) -> Any:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await fn(conn)

        result = await self.ledger.run(run)
        if isinstance(result, Exception):
            raise result
        return result

    # -- R6 ---------------------------------------------------------------------------------------

    def _overage_labels(self, plan: asyncpg.Record | None) -> dict[str, str]:
        cat = self.catalogues.get(plan["product"]) if plan is not None and self.catalogues is not None else None
        p = cat.plans.get(plan["plan"]) if cat is not None and plan is not None else None
        if p is None:
            return {}
        return {m: spec.overage.label for m, spec in p.policies.items() if spec.overage is not None}

    def _plan_meters(self, product: str | None, plan: str | None) -> set[str]:
        """The meters a plan sets policies for (subscriptions.py: its policies and capacity meters)."""
        cat = self.catalogues.get(product) if self.catalogues is not None and product else None
        p = cat.plans.get(plan) if cat is not None and plan else None
        return set(p.policies) | set(p.capacity) if p is not None else set()

    def _policy_meters_at(self, policies: asyncpg.Record, cycle: asyncpg.Record | None) -> set[str]:
        """The meters with a policy at a past time: the account's own (its policies now, less those of
        its plan now) and those of the plan of the cycle in force then."""
        own = set(policies["meters"]) - self._plan_meters(policies["product"], policies["plan"])
        return own | (self._plan_meters(cycle["product"], cycle["plan"]) if cycle is not None else set())

    async def balance_as_of(self, account_id: str, meter: str, as_of_ms: int) -> pb.Balance:
        """The balance at as_of_ms as GetBalance answered it then: every row stamped at or before
        as_of_ms counts; grants and meters follow the live rules (hotpath.HotPath.balance)."""
        v.ident("account_id", account_id)
        if meter:
            v.ident("meter", meter.removeprefix("$"))
        v.time_ms("as_of_ms", as_of_ms)
        now = self.clock.now_ms()
        if as_of_ms > now:
            raise InvalidArgument("as_of_ms", f"is in the future (now is {now}); 0 asks for the live balance")

        async def read(conn: asyncpg.Connection) -> Any:
            acct = await conn.fetchrow(sql.ACCOUNT, account_id)
            if acct is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            if acct["created_ms"] > as_of_ms:
                return NotFound("account_id", f"account {account_id!r} did not exist at {as_of_ms} "
                                              f"(created at {acct['created_ms']})")
            status = await conn.fetchval(sql.STATUS_AT, account_id, as_of_ms) or "active"
            infos = await _grants(conn, account_id)
            states = await _states_at(conn, account_id, as_of_ms, inclusive=True, created_ms=acct["created_ms"],
                                      now_ms=now)
            cycle = await conn.fetchrow(sql.CYCLE_AT, account_id, as_of_ms)
            policies = await conn.fetchrow(sql.POLICY_METERS, account_id)
            return status, infos, states, cycle, policies

        status, infos, states, cycle, policies = await self._read(read)
        # the account's meters and wallets as the live balance listed them (balance.lua): every bucket
        # with a grant made by then, live or ended, and every meter with a policy then, zeros included
        known = {g.bucket for g in infos.values() if g.created_ms <= as_of_ms} | self._policy_meters_at(policies, cycle)
        known = {b for b in known if not meter or b == meter}
        grants = []
        for gid, g in infos.items():
            granted, used, held = states.get(gid, [0, 0, 0])
            if g.created_ms > as_of_ms or (meter and g.bucket != meter):
                continue
            # the live state holds what a reload from the ledger keeps: grants not yet expired, or
            # still holding units (see snapshot_grants in storage/sql/queries.sql)
            if g.expires_at_ms != 0 and g.expires_at_ms <= as_of_ms and held == 0:
                continue
            grants.append(GrantState(gid, g.bucket, g.source, g.priority, granted, used, held, g.overdraft_limit,
                                     g.starts_at_ms, g.expires_at_ms, g.label))
        grants.sort(key=lambda g: (g.bucket, g.priority, g.expires_at_ms or 2**62, g.grant_id))
        return pb.Balance(account_id=account_id, status=_STATUS_TO_PB.get(status, pb.ACCOUNT_STATUS_UNSPECIFIED),
                          meters=_meters_pb(grants, as_of_ms, known), grants=[_grant_pb(g) for g in grants],
                          as_of_ms=as_of_ms, cycle_start_ms=cycle["cycle_start_ms"] if cycle else 0,
                          cycle_end_ms=cycle["cycle_end_ms"] if cycle else 0)

    # -- R4 ---------------------------------------------------------------------------------------

    async def transactions(self, req: pb.ListTransactionsRequest) -> pb.TransactionPage:
        """Non-usage rows naming a bucket, newest first, in [from_ms, to_ms)."""
        account_id = v.ident("account_id", req.account_id)
        v.time_ms("from_ms", req.from_ms)
        v.time_ms("to_ms", req.to_ms)
        now = self.clock.now_ms()
        to_ms = req.to_ms or now + 1  # 0: everything so far, including what was stamped this millisecond
        if req.from_ms > to_ms:
            raise InvalidArgument("from_ms", "must not be after to_ms")
        if len(req.kinds) > MAX_KINDS:
            raise InvalidArgument("kinds", f"at most {MAX_KINDS}")
        kinds = []
        for i, kind in enumerate(req.kinds):
            v.ident(f"kinds[{i}]", kind, max_len=64)
            if kind in sql.USAGE_KINDS:
                raise InvalidArgument(f"kinds[{i}]", f"{kind!r} is a usage kind, never a transaction (see ListUsage)")
            kinds.append(kind)
        size = cursor.page_size(req.page_size)
        after_ms: int | None = None
        after_id: int | None = None
        if req.page_token:
            pos = self.tokens.decode("transactions", req.page_token, {"a": str, "t": int, "e": int})
            if pos["a"] != account_id:
                raise InvalidArgument("page_token", "belongs to another account")
            after_ms, after_id = pos["t"], pos["e"]

        async def read(conn: asyncpg.Connection) -> Any:
            if await conn.fetchval(sql.ACCOUNT, account_id) is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            plan = await conn.fetchrow(sql.PLAN_OF, account_id)
            return plan, await conn.fetch(sql.TRANSACTIONS_PAGE, account_id, req.from_ms, to_ms, kinds, after_ms,
                                          after_id, size + 1)

        plan, rows = await self._read(read)
        labels = self._overage_labels(plan)
        page = pb.TransactionPage(transactions=[_transaction_pb(r, labels) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            page.next_page_token = self.tokens.encode("transactions", {"a": account_id, "t": last["at_ms"],
                                                                  "e": last["entry_id"]})
        return page

    # -- R5 ---------------------------------------------------------------------------------------

    async def statement(self, req: pb.GetStatementRequest) -> pb.Statement:
        """What cycle `req.cycle` of the account's subscription billed. FAILED_PRECONDITION when the
        account has no subscription (it has no cycles); NOT_FOUND for an unknown account."""
        account_id = v.ident("account_id", req.account_id)
        if req.cycle < -1:
            raise InvalidArgument("cycle", "must be -1 (the current cycle) or a cycle number from 0")
        now = self.clock.now_ms()

        async def read(conn: asyncpg.Connection) -> Any:
            acct = await conn.fetchrow(sql.ACCOUNT, account_id)
            if acct is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            sub = await conn.fetchrow(sql.SUBSCRIPTION, account_id)
            if sub is None:
                return FailedPrecondition(f"account_id: account {account_id!r} has no subscription, so no cycles")
            current = int(sub["cycle_no"])
            n = current if req.cycle == -1 else int(req.cycle)
            if n > current:
                return InvalidArgument("cycle", f"cycle {n} has not started: the current cycle is {current}")
            c = await self._cycle(conn, account_id, sub, n)
            s, e = c.start_ms, c.end_ms
            infos = await _grants(conn, account_id)
            before = await _states_at(conn, account_id, s, inclusive=False, created_ms=acct["created_ms"], now_ms=now)
            flows = [Flow(r["grant_id"], r["bucket"], r["kind"], r["at_start"], r["at_end"], r["carry_out"],
                          r["d_granted"], r["d_used"], r["d_held"], r["amount"])
                     for r in await conn.fetch(sql.WINDOW_FLOWS, account_id, s, e)]
            # holds due in the cycle that the sweeper has not returned yet: as if their rows were there
            for h in await conn.fetch(sql.DUE_HOLDS_INCL, account_id, min(e, now)):
                if h["expires_at_ms"] >= s:
                    flows.extend(Flow(p["g"], p["b"], "expire", h["expires_at_ms"] == s, h["expires_at_ms"] == e,
                                      False, 0, 0, -int(p["a"])) for p in h["rows"] or ())
            overage = [Overage(r["meter"], r["wallet"], r["units"], r["from_grants"], r["minor"])
                       for r in await conn.fetch(sql.OVERAGE, account_id, s, e)]
            txns = [r for r in await conn.fetch(sql.TRANSACTIONS_BETWEEN, account_id, s, e)
                    if in_cycle(infos.get(r["grant_id"]), r["at_ms"] == s, r["at_ms"] == e, s, e)]
            return c, n < current, infos, before, flows, overage, txns

        c, closed, infos, before, flows, overage, txns = await self._read(read)
        lines = statement_lines(infos, {g: (st[0], st[1], st[2]) for g, st in before.items()}, flows, overage,
                                c.start_ms, c.end_ms, now)
        return pb.Statement(
            account_id=account_id, product=c.product, plan=c.plan, cycle=c.number, cycle_start_ms=c.start_ms,
            cycle_end_ms=c.end_ms, closed=closed,
            lines=[pb.StatementLine(bucket=x.bucket, opening=x.opening, granted=x.granted, used=x.used,
                                    forfeited=x.forfeited, closing=x.closing, overage_units=x.overage_units,
                                    overage_minor=x.overage_minor, overage_currency=x.overage_currency)
                   for x in lines],
            transactions=[_transaction_pb(r) for r in txns])

    async def _cycle(self, conn: asyncpg.Connection, account_id: str, sub: asyncpg.Record, n: int) -> _Cycle:
        """Cycle n's bounds and plan: the subscription's own for the current cycle; for a past one the
        recorded cycle where the service keeps them, else the cycle arithmetic from the anchor."""
        product, plan = sub["product"], sub["plan"]
        if n == sub["cycle_no"]:
            return _Cycle(n, sub["cycle_start_ms"], sub["cycle_end_ms"], product, plan)
        if await conn.fetchval(sql.HAS_CYCLE_TABLE):
            rec = await conn.fetchrow(sql.RECORDED_CYCLE, account_id, n)
            if rec is not None:
                return _Cycle(n, rec["cycle_start_ms"], rec["cycle_end_ms"], rec["product"], rec["plan"])
        c = cycles.cycle(sub["interval"], sub["anchor_at_ms"], sub["time_zone"], n)
        end = sub["cycle_start_ms"] if n == sub["cycle_no"] - 1 else c.end_ms
        return _Cycle(n, c.start_ms, end, product, plan)

    # -- KB5 --------------------------------------------------------------------------------------

    async def accounts(self, req: pb.ListAccountsRequest) -> pb.AccountPage:
        """The organization's accounts in account_id order, with their live balances from the
        projection (grants started and not expired now)."""
        org_id = v.ident("org_id", req.org_id)
        size = cursor.page_size(req.page_size)
        after: str | None = None
        if req.page_token:
            pos = self.tokens.decode("accounts", req.page_token, {"o": str, "a": str})
            if pos["o"] != org_id:
                raise InvalidArgument("page_token", "belongs to another organization")
            after = pos["a"]
        now = self.clock.now_ms()

        async def read(conn: asyncpg.Connection) -> Any:
            accts = await conn.fetch(sql.ORG_ACCOUNTS, org_id, after, size + 1)
            ids = [a["account_id"] for a in accts[:size]]
            return (accts, await conn.fetch(sql.LIVE_GRANTS, ids, now), await conn.fetch(sql.DUE_HOLDS_OF, ids, now),
                    await conn.fetch(sql.KNOWN_BUCKETS, ids))

        accts, grant_rows, holds, bucket_rows = await self._read(read)
        known: dict[str, list[str]] = {}  # every meter and wallet of the account, as its balance lists them
        for r in bucket_rows:
            known.setdefault(r["account_id"], []).append(r["bucket"])
        returned: dict[tuple[str, str], int] = {}
        for h in holds:
            for part in h["rows"] or ():
                key = (h["account_id"], part["g"])
                returned[key] = returned.get(key, 0) + int(part["a"])
        by_account: dict[str, list[GrantState]] = {}
        for r in grant_rows:
            held = r["held"] - returned.get((r["account_id"], r["grant_id"]), 0)
            by_account.setdefault(r["account_id"], []).append(
                GrantState(r["grant_id"], r["bucket"], r["source"], r["priority"], r["granted"], r["used"], held,
                           r["overdraft_limit"], r["starts_at_ms"], r["expires_at_ms"], r["label"]))
        page = pb.AccountPage()
        for a in accts[:size]:
            grants = by_account.get(a["account_id"], [])
            expiries = [g.expires_at_ms for g in grants if g.expires_at_ms]
            page.accounts.append(pb.AccountOverview(
                account_id=a["account_id"], org_id=a["org_id"], owner_id=a["owner_id"],
                status=_STATUS_TO_PB.get(a["status"], pb.ACCOUNT_STATUS_UNSPECIFIED), product=a["product"],
                plan=a["plan"], interval=a["interval"], cycle_end_ms=a["cycle_end_ms"],
                meters=_meters_pb(grants, now, known.get(a["account_id"], ())), next_expiry_ms=min(expiries, default=0),
                pending_change=None if not a["pending"] else pb.PlanChange(
                    plan=a["pending"]["plan"], interval=a["pending"]["interval"],
                    packs=dict(a["pending"]["packs"] or {}), effective_at_ms=a["cycle_end_ms"])))
        if len(accts) > size:
            page.next_page_token = self.tokens.encode("accounts", {"o": org_id, "a": accts[size - 1]["account_id"]})
        return page
