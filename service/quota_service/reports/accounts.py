"""Balance as of a past time (R6), transactions (R4), statements per cycle (R5) and the
organization's account overview (KB5), from the ledger.

Each report reads one consistent snapshot of Postgres (a read-only REPEATABLE READ transaction), so
rows committed while it runs never show half. The arithmetic is in accounts_calc.py, the SQL in the
named queries of storage/sql/queries/reports.sql; the answers are the plain values of model.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service.catalogue import CatalogueSet
from quota_service.domain import cycles
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.model import BalanceView, GrantState, bucket_totals
from quota_service.errors import FailedPrecondition, InvalidArgument, NotFound
from quota_service.reports import cursor
from quota_service.reports.accounts_calc import (
    USAGE_KINDS,
    Flow,
    GrantInfo,
    Overage,
    in_cycle,
    statement_lines,
    transaction_amount,
)
from quota_service.reports.model import (
    AccountOverview,
    AccountPage,
    BalanceAt,
    Statement,
    Transaction,
    TransactionPage,
    TransactionQuery,
    plan_change,
)
from quota_service.storage import wire
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

MAX_KINDS = 32


def _transaction(r: asyncpg.Record, overage_labels: Mapping[str, str] | None = None) -> Transaction:
    label = r["label"]
    if r["kind"] == "charge":  # money a charge took from a wallet, labelled like the plan's overage (TA8)
        label = (overage_labels or {}).get(r["meter"], "") or r["meter"]
    return Transaction(entry_id=r["entry_id"], occurred_at_ms=r["at_ms"], kind=r["kind"], grant_id=r["grant_id"],
                       bucket=r["bucket"], amount=transaction_amount(r["kind"], r["d_granted"], r["d_used"], r["amount"]),
                       source=r["source"], label=label, idempotency_key=r["idempotency_key"])


def _subtract_holds(states: dict[str, list[int]], holds: list[asyncpg.Record]) -> None:
    """Holds past their time count as returned, whether or not the sweeper has written their rows."""
    for h in holds:
        for part in h["rows"] or ():
            states.setdefault(part["g"], [0, 0, 0])[2] -= int(part["a"])


async def _grants(conn: asyncpg.Connection, account_id: str) -> dict[str, GrantInfo]:
    out = {}
    for r in await conn.fetch(Q["report_grants"], account_id):
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
    query = Q[f"report_states_{'backward' if backward else 'forward'}_{'incl' if inclusive else 'excl'}"]
    states = {r["grant_id"]: [r["granted"], r["used"], r["held"]] for r in await conn.fetch(query, account_id, cut_ms)}
    _subtract_holds(states, await conn.fetch(Q["report_due_holds_incl" if inclusive else "report_due_holds_excl"],
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
        it: an exception inside would cost the pool its connection (see PostgresLedger.run)."""

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

    async def balance_as_of(self, account_id: str, meter: str, as_of_ms: int) -> BalanceAt:
        """The balance at as_of_ms as GetBalance answered it then: every row stamped at or before
        as_of_ms counts; grants and meters follow the live rules (app.reserve.HotPath.balance)."""
        v.ident("account_id", account_id)
        if meter:
            v.ident("meter", meter.removeprefix("$"))
        v.time_ms("as_of_ms", as_of_ms)
        now = self.clock.now_ms()
        if as_of_ms > now:
            raise InvalidArgument("as_of_ms", f"is in the future (now is {now}); 0 asks for the live balance")

        async def read(conn: asyncpg.Connection) -> Any:
            acct = await conn.fetchrow(Q["report_account"], account_id)
            if acct is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            if acct["created_ms"] > as_of_ms:
                return NotFound("account_id", f"account {account_id!r} did not exist at {as_of_ms} "
                                              f"(created at {acct['created_ms']})")
            status = await conn.fetchval(Q["report_status_at"], account_id, as_of_ms) or "active"
            infos = await _grants(conn, account_id)
            states = await _states_at(conn, account_id, as_of_ms, inclusive=True, created_ms=acct["created_ms"],
                                      now_ms=now)
            cycle = await conn.fetchrow(Q["report_cycle_at"], account_id, as_of_ms)
            policies = await conn.fetchrow(Q["report_policy_meters"], account_id)
            alerts = await conn.fetch(Q["account_alert_thresholds"], account_id)
            return acct, status, infos, states, cycle, policies, alerts

        acct, status, infos, states, cycle, policies, alerts = await self._read(read)
        # the account's meters and wallets as the live balance listed them (balance.lua): every bucket
        # with a grant made by then, live or ended, and every meter with a policy then, zeros included
        known = {g.bucket for g in infos.values() if g.created_ms <= as_of_ms} | self._policy_meters_at(policies, cycle)
        known = {b for b in known if not meter or b == meter}
        grants = _grants_at(infos, states, as_of_ms, meter)
        view = BalanceView(account_id, status, grants, as_of_ms, bucket_totals(grants, as_of_ms, known),
                           {r["meter"]: tuple(int(t) for t in (r["al"] or ())) for r in alerts})
        if cycle is None:
            return BalanceAt(view, time_zone=acct["time_zone"])
        return BalanceAt(view, cycle["cycle_start_ms"], cycle["cycle_end_ms"], acct["time_zone"])

    # -- R4 ---------------------------------------------------------------------------------------

    def _transaction_kinds(self, kinds: tuple[str, ...]) -> list[str]:
        if len(kinds) > MAX_KINDS:
            raise InvalidArgument("kinds", f"at most {MAX_KINDS}")
        for i, kind in enumerate(kinds):
            v.ident(f"kinds[{i}]", kind, max_len=64)
            if kind in USAGE_KINDS:
                raise InvalidArgument(f"kinds[{i}]", f"{kind!r} is a usage kind, never a transaction (see ListUsage)")
        return list(kinds)

    async def transactions(self, q: TransactionQuery) -> TransactionPage:
        """Non-usage rows naming a bucket, newest first, in [from_ms, to_ms)."""
        account_id = v.ident("account_id", q.account_id)
        v.time_ms("from_ms", q.from_ms)
        v.time_ms("to_ms", q.to_ms)
        now = self.clock.now_ms()
        to_ms = q.to_ms or now + 1  # 0: everything so far, including what was stamped this millisecond
        if q.from_ms > to_ms:
            raise InvalidArgument("from_ms", "must not be after to_ms")
        kinds = self._transaction_kinds(q.kinds)
        size = cursor.page_size(q.page_size)
        after_ms: int | None = None
        after_id: int | None = None
        if q.page_token:
            pos = self.tokens.decode("transactions", q.page_token, {"a": str, "t": int, "e": int})
            if pos["a"] != account_id:
                raise InvalidArgument("page_token", "belongs to another account")
            after_ms, after_id = pos["t"], pos["e"]

        async def read(conn: asyncpg.Connection) -> Any:
            if await conn.fetchval(Q["report_account"], account_id) is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            plan = await conn.fetchrow(Q["report_plan_of"], account_id)
            return plan, await conn.fetch(Q["report_transactions_page"], account_id, q.from_ms, to_ms, kinds,
                                          after_ms, after_id, size + 1)

        plan, rows = await self._read(read)
        labels = self._overage_labels(plan)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self.tokens.encode("transactions", {"a": account_id, "t": last["at_ms"], "e": last["entry_id"]})
        return TransactionPage(tuple(_transaction(r, labels) for r in rows[:size]), token)

    # -- R5 ---------------------------------------------------------------------------------------

    async def statement(self, account_id: str, cycle: int) -> Statement:
        """What cycle `cycle` of the account's subscription billed (-1: the current one).
        FAILED_PRECONDITION when the account has no subscription (it has no cycles); NOT_FOUND for an
        unknown account."""
        account_id = v.ident("account_id", account_id)
        if cycle < -1:
            raise InvalidArgument("cycle", "must be -1 (the current cycle) or a cycle number from 0")
        now = self.clock.now_ms()

        async def read(conn: asyncpg.Connection) -> Any:
            acct = await conn.fetchrow(Q["report_account"], account_id)
            if acct is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            sub = await conn.fetchrow(Q["report_subscription"], account_id)
            if sub is None:
                return FailedPrecondition(f"account_id: account {account_id!r} has no subscription, so no cycles")
            current = int(sub["cycle_no"])
            n = current if cycle == -1 else int(cycle)
            if n > current:
                return InvalidArgument("cycle", f"cycle {n} has not started: the current cycle is {current}")
            c = await self._cycle(conn, account_id, sub, n)
            return c, n < current, *await _statement_rows(conn, account_id, c, acct["created_ms"], now)

        c, closed, infos, before, flows, overage, txns = await self._read(read)
        lines = statement_lines(infos, {g: (st[0], st[1], st[2]) for g, st in before.items()}, flows, overage,
                                c.start_ms, c.end_ms, now)
        return Statement(account_id=account_id, product=c.product, plan=c.plan, cycle=c.number,
                         cycle_start_ms=c.start_ms, cycle_end_ms=c.end_ms, closed=closed, lines=tuple(lines),
                         transactions=tuple(_transaction(r) for r in txns))

    async def _cycle(self, conn: asyncpg.Connection, account_id: str, sub: asyncpg.Record, n: int) -> _Cycle:
        """Cycle n's bounds and plan: the subscription's own for the current cycle; for a past one the
        recorded cycle where the service keeps them, else the cycle arithmetic from the anchor."""
        product, plan = sub["product"], sub["plan"]
        if n == sub["cycle_no"]:
            return _Cycle(n, sub["cycle_start_ms"], sub["cycle_end_ms"], product, plan)
        if await conn.fetchval(Q["report_has_cycle_table"]):
            rec = await conn.fetchrow(Q["report_recorded_cycle"], account_id, n)
            if rec is not None:
                return _Cycle(n, rec["cycle_start_ms"], rec["cycle_end_ms"], rec["product"], rec["plan"])
        c = cycles.cycle(sub["interval"], sub["anchor_at_ms"], sub["time_zone"], n)
        end = sub["cycle_start_ms"] if n == sub["cycle_no"] - 1 else c.end_ms
        return _Cycle(n, c.start_ms, end, product, plan)

    # -- KB5 --------------------------------------------------------------------------------------

    async def accounts(self, org_id: str, page_size: int = 0, page_token: str = "") -> AccountPage:
        """The organization's accounts in account_id order, with their live balances from the
        projection (grants started and not expired now)."""
        org_id = v.ident("org_id", org_id)
        size = cursor.page_size(page_size)
        after: str | None = None
        if page_token:
            pos = self.tokens.decode("accounts", page_token, {"o": str, "a": str})
            if pos["o"] != org_id:
                raise InvalidArgument("page_token", "belongs to another organization")
            after = pos["a"]
        now = self.clock.now_ms()

        async def read(conn: asyncpg.Connection) -> Any:
            accts = await conn.fetch(Q["report_org_accounts"], org_id, after, size + 1)
            ids = [a["account_id"] for a in accts[:size]]
            return (accts, await conn.fetch(Q["report_live_grants"], ids, now),
                    await conn.fetch(Q["report_due_holds_of"], ids, now), await conn.fetch(Q["report_known_buckets"], ids))

        accts, grant_rows, holds, bucket_rows = await self._read(read)
        known: dict[str, list[str]] = {}  # every meter and wallet of the account, as its balance lists them
        for r in bucket_rows:
            known.setdefault(r["account_id"], []).append(r["bucket"])
        by_account = _live_grants(grant_rows, holds)
        token = ""
        if len(accts) > size:
            token = self.tokens.encode("accounts", {"o": org_id, "a": accts[size - 1]["account_id"]})
        return AccountPage(tuple(_overview(a, by_account.get(a["account_id"], []), known.get(a["account_id"], ()), now)
                                 for a in accts[:size]), token)


def _grants_at(infos: Mapping[str, GrantInfo], states: Mapping[str, list[int]], as_of_ms: int,
               meter: str) -> list[GrantState]:
    """The grants a live balance listed at as_of_ms (of `meter` only, when given), in balance order."""
    grants = []
    for gid, g in infos.items():
        granted, used, held = states.get(gid, [0, 0, 0])
        if g.created_ms > as_of_ms or (meter and g.bucket != meter):
            continue
        # the live state holds what a reload from the ledger keeps: grants not yet expired, or
        # still holding units (the named query snapshot_grants)
        if g.expires_at_ms != 0 and g.expires_at_ms <= as_of_ms and held == 0:
            continue
        grants.append(GrantState(gid, g.bucket, g.source, g.priority, granted, used, held, g.overdraft_limit,
                                 g.starts_at_ms, g.expires_at_ms, g.label))
    grants.sort(key=lambda g: (g.bucket, g.priority, g.expires_at_ms or 2**62, g.grant_id))
    return grants


async def _statement_rows(conn: asyncpg.Connection, account_id: str, c: _Cycle, created_ms: int,
                          now: int) -> tuple[dict[str, GrantInfo], dict[str, list[int]], list[Flow], list[Overage],
                                             list[asyncpg.Record]]:
    """What a statement of cycle `c` is computed from: the grants, their states at its start, the
    flows and overage charges within it, and its transactions."""
    s, e = c.start_ms, c.end_ms
    infos = await _grants(conn, account_id)
    before = await _states_at(conn, account_id, s, inclusive=False, created_ms=created_ms, now_ms=now)
    flows = [Flow(r["grant_id"], r["bucket"], r["kind"], r["at_start"], r["at_end"], r["carry_out"],
                  r["d_granted"], r["d_used"], r["d_held"], r["amount"])
             for r in await conn.fetch(Q["report_window_flows"], account_id, s, e)]
    # holds due in the cycle that the sweeper has not returned yet: as if their rows were there
    for h in await conn.fetch(Q["report_due_holds_incl"], account_id, min(e, now)):
        if h["expires_at_ms"] >= s:
            flows.extend(Flow(p["g"], p["b"], "expire", h["expires_at_ms"] == s, h["expires_at_ms"] == e,
                              False, 0, 0, -int(p["a"])) for p in h["rows"] or ())
    overage = [Overage(r["meter"], r["wallet"], r["units"], r["from_grants"], r["minor"])
               for r in await conn.fetch(Q["report_overage"], account_id, s, e)]
    txns = [r for r in await conn.fetch(Q["report_transactions_between"], account_id, s, e)
            if in_cycle(infos.get(r["grant_id"]), r["at_ms"] == s, r["at_ms"] == e, s, e)]
    return infos, before, flows, overage, txns


def _live_grants(grant_rows: list[asyncpg.Record], holds: list[asyncpg.Record]) -> dict[str, list[GrantState]]:
    """The live grants of each account, their holds past due counted as returned."""
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
    return by_account


def _overview(a: asyncpg.Record, grants: list[GrantState], known: Iterable[str], now_ms: int) -> AccountOverview:
    expiries = [g.expires_at_ms for g in grants if g.expires_at_ms]
    return AccountOverview(
        account_id=a["account_id"], org_id=a["org_id"], owner_id=a["owner_id"], status=a["status"],
        product=a["product"], plan=a["plan"], interval=a["interval"], cycle_end_ms=a["cycle_end_ms"],
        meters=tuple(bucket_totals(grants, now_ms, known)), next_expiry_ms=min(expiries, default=0),
        pending_change=plan_change(a["pending"], a["cycle_end_ms"]),
        alert_thresholds={m: p.alert_pct_left for m, p in wire.policies_from_json(a["policies"]).items()})
