"""Consistency check (N4): balances equal the ledger, and Redis equals Postgres.

Every grant's granted, used and held units are recomputed from the ledger (the sums of the entries'
d_granted, d_used and d_held for that grant: grants, cycle grants, carry-overs, charges, holds and
their commit, release or expiry, adjustments, settlements) and compared with the Postgres
projection (the grants table), whose held units must also equal the open holds' rows. Then the
account's Redis state is compared with that projection.

A difference in Postgres is only reported: the ledger is the truth and nothing here rewrites the
projection. A difference in Redis is repaired by a rebuild from Postgres (N3), then checked again.

Redis may differ legitimately for a moment: a mutation decided there and not yet confirmed durable.
An account with unconfirmed mutations is checked again a few times; if it stays busy it is reported
as in flight, not as a difference. Unconfirmed mutations past their deadline are what the hot path
rebuilds an account for before deciding anything: the check does the same, and compares afterwards.
Holds whose time is up count as returned on both sides (Redis and the sweeper return them lazily).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from quota_service.app.reserve import Rebuilder
from quota_service.domain.clock import Clock
from quota_service.domain.consistency import (
    BALANCE_FIELDS,
    REDIS_FIELDS,
    Difference,
    Hold,
    RedisView,
    ledger_differences,
    redis_differences,
)
from quota_service.errors import NotFound
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q
from quota_service.storage.redis_store import RedisStore

log = logging.getLogger(__name__)

MAX_PAGE = 1000
SETTLE_ATTEMPTS = 6  # looks at a busy account before it is reported as in flight


@dataclass(frozen=True)
class AccountCheck:
    account_id: str
    grants: int
    differences: tuple[Difference, ...] = ()
    redis: str = "match"  # match, not_loaded, in_flight, rebuilt, repaired, differs


@dataclass
class VerifyPage:
    accounts: list[AccountCheck] = field(default_factory=list)
    last_account_id: str = ""

    @property
    def differences(self) -> list[Difference]:
        return [d for a in self.accounts for d in a.differences]


@dataclass
class PostgresView:
    """A page of accounts read from Postgres in one snapshot."""

    epochs: dict[str, int]
    grants: dict[str, dict[str, dict[str, int]]]  # account -> grant -> row
    sums: dict[str, dict[str, dict[str, int]]]  # account -> grant -> ledger sums
    holds: dict[str, list[Hold]]  # account -> (hold, expires_ms, grant, amount)


# -- reading and repairing -----------------------------------------------------------------------


class Verifier:
    def __init__(self, ledger: PostgresLedger, store: RedisStore, rebuilder: Rebuilder, clock: Clock) -> None:
        self.ledger = ledger
        self.store = store
        self.rebuilder = rebuilder
        self.clock = clock

    async def pages(self, account_id: str = "", *, page_size: int = 100,
                    after: str = "") -> AsyncIterator[VerifyPage]:
        """One page for one account (NotFound when unknown), or every account after `after`, page by page."""
        if account_id:
            if not await self.ledger.fetchval(Q["verify_account_exists"], account_id):
                raise NotFound("account_id", f"unknown account {account_id!r}")
            yield await self.check([account_id])
            return
        while True:
            rows = await self._accounts_after(after, page_size)
            if not rows:
                return
            page = await self.check([r["account_id"] for r in rows])
            yield page
            after = page.last_account_id
            if len(rows) < page_size:
                return

    async def _accounts_after(self, after: str, limit: int) -> list[Any]:
        return await self.ledger.run(lambda c: c.fetch(Q["verify_accounts_after"], after, limit))

    async def check(self, accounts: list[str]) -> VerifyPage:
        """Check a page of accounts: Postgres against the ledger, then Redis against Postgres."""
        before = await self._read_redis(accounts)
        pg = await self._read_postgres(accounts)
        after = await self._read_redis(accounts, only_meta=True)
        out = VerifyPage(last_account_id=accounts[-1] if accounts else "")
        for a in accounts:
            grants, holds = pg.grants.get(a, {}), pg.holds.get(a, [])
            diffs = ledger_differences(a, grants, pg.sums.get(a, {}), holds)
            if before[a].epoch is None and after[a].epoch is None:
                out.accounts.append(AccountCheck(a, len(grants), tuple(diffs), "not_loaded"))
                continue
            if after[a].quiet_since(before[a]):
                found = redis_differences(a, grants, holds, before[a], self.clock.now_ms())
                if not found:
                    out.accounts.append(AccountCheck(a, len(grants), tuple(diffs)))
                    continue
            out.accounts.append(await self._settle(a, diffs))
        return out

    async def _settle(self, account_id: str, pg_diffs: list[Difference]) -> AccountCheck:
        """An account that was busy or differed: look again until it is quiet; rebuild what still differs."""
        for attempt in range(SETTLE_ATTEMPTS):
            before, pg, after = await self._look(account_id)
            grants, holds = pg.grants.get(account_id, {}), pg.holds.get(account_id, [])
            n = len(grants)
            if before.epoch is None and after.epoch is None:
                return AccountCheck(account_id, n, tuple(pg_diffs), "not_loaded")
            now = self.clock.now_ms()
            if any(deadline <= now for deadline in {**before.pending, **after.pending}.values()):
                # what the hot path does before its next decision: rebuild, then compare
                await self.rebuilder.rebuild(account_id)
                check = await self._after_rebuild(account_id, pg_diffs, [])
                return replace(check, redis="rebuilt") if check.redis == "match" else check
            if after.quiet_since(before):
                found = redis_differences(account_id, grants, holds, before, now)
                if not found:
                    return AccountCheck(account_id, n, tuple(pg_diffs))
                if attempt >= 1:  # the same difference on a quiet account, twice: repair it
                    note = f"Redis at epoch {before.epoch}, Postgres at {pg.epochs.get(account_id)}"
                    found = [replace(d, detail=d.detail or note) for d in found]
                    await self.rebuilder.rebuild(account_id)
                    return await self._after_rebuild(account_id, pg_diffs, found)
            await asyncio.sleep(0.01 * (attempt + 1))
        return AccountCheck(account_id, n, tuple(pg_diffs), "in_flight")

    async def _after_rebuild(self, account_id: str, pg_diffs: list[Difference],
                             found: list[Difference]) -> AccountCheck:
        before, pg, after = await self._look(account_id)
        grants = pg.grants.get(account_id, {})
        left = redis_differences(account_id, grants, pg.holds.get(account_id, []), before, self.clock.now_ms())
        if not after.quiet_since(before):  # mutations already decided on the rebuilt state: not a difference
            left = []
        repaired = not left
        for d in found:
            log.warning("redis differed from postgres", extra={"account_id": account_id, "grant_id": d.grant_id,
                                                                "field": d.field, "repaired": repaired})
        diffs = [*pg_diffs, *(replace(d, repaired=True) for d in found)] if repaired else [*pg_diffs, *left]
        state = ("repaired" if found else "match") if repaired else "differs"
        return AccountCheck(account_id, len(grants), tuple(diffs), state)

    async def _look(self, account_id: str) -> tuple[RedisView, PostgresView, RedisView]:
        """Redis, then Postgres, then Redis's epoch, sequence and unconfirmed mutations once more."""
        before = (await self._read_redis([account_id]))[account_id]
        pg = await self._read_postgres([account_id])
        after = (await self._read_redis([account_id], only_meta=True))[account_id]
        return before, pg, after

    async def _read_postgres(self, accounts: list[str]) -> PostgresView:
        async def run(conn: Any) -> PostgresView:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                epochs = await conn.fetch(Q["verify_epochs"], accounts)
                grants = await conn.fetch(Q["verify_grants"], accounts)
                sums = await conn.fetch(Q["verify_ledger_sums"], accounts)
                holds = await conn.fetch(Q["verify_open_holds"], accounts)
            view = PostgresView({r["account_id"]: r["epoch"] for r in epochs}, defaultdict(dict),
                                defaultdict(dict), defaultdict(list))
            for r in grants:
                view.grants[r["account_id"]][r["grant_id"]] = {k: r[k] for k in REDIS_FIELDS}
            for r in sums:
                view.sums[r["account_id"]][r["grant_id"]] = {k: r[k] for k in BALANCE_FIELDS}
            for r in holds:
                view.holds[r["account_id"]].append((r["hold_id"], r["expires_at_ms"], r["grant_id"], r["amount"]))
            return view

        return await self.ledger.run(run)

    async def _read_redis(self, accounts: list[str], *, only_meta: bool = False) -> dict[str, RedisView]:
        """Each account's state, read with plain commands (one pipeline, no script: nothing changes)."""
        client = self.store.client

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for a in accounts:
                    meta, grants, holds, _, pending = self.store.keys.account(a)
                    pipe.hmget(meta, "ep", "sq")
                    pipe.zrange(pending, 0, -1, withscores=True)
                    if not only_meta:
                        pipe.hgetall(grants)
                        pipe.hgetall(holds)
                return await pipe.execute()  # type: ignore[no-any-return]

        raw = await self.store.run(run)
        step = 2 if only_meta else 4
        out = {}
        for i, a in enumerate(accounts):
            (ep, sq), pending, *rest = raw[i * step:(i + 1) * step]
            grants, holds = rest if rest else ({}, {})
            out[a] = RedisView(None if ep is None else int(ep), int(sq or 0),
                               {k: _json(v) for k, v in grants.items()}, {k: _json(v) for k, v in holds.items()},
                               {k: int(s) for k, s in pending})
        return out


def _json(raw: str) -> dict[str, Any]:
    import json

    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


# -- `quota-service verify` ----------------------------------------------------------------------


def report_text(pages: list[VerifyPage]) -> str:
    """The readable report: one line of totals, then each difference, busy and rebuilt accounts."""
    accounts = [a for p in pages for a in p.accounts]
    diffs = [d for a in accounts for d in a.differences]
    n, g = len(accounts), sum(a.grants for a in accounts)
    out = [f"checked {n} account{'s' * (n != 1)}, {g} grant{'s' * (g != 1)}: "
           + (f"{len(diffs)} difference{'s' * (len(diffs) != 1)}" if diffs else "balances equal the ledger")]
    for d in diffs:
        what = "repaired by a rebuild" if d.repaired else ("reported" if d.store == "postgres" else "NOT repaired")
        out.append(f"  {d.account_id} {d.grant_id or '-'} {d.store}.{d.field}: expected {d.expected}, "
                   f"found {d.actual} ({what}){' - ' + d.detail if d.detail else ''}")
    for state, text in (("in_flight", "in flight, Redis not compared"),
                        ("rebuilt", "rebuilt: unconfirmed mutations past their deadline")):
        names = [a.account_id for a in accounts if a.redis == state]
        if names:
            out.append(f"{text}: {', '.join(names)}")
    return "\n".join(out)


def report_json(pages: list[VerifyPage]) -> dict[str, Any]:
    from dataclasses import asdict

    accounts = [a for p in pages for a in p.accounts]
    return {"ok": not any(a.differences for a in accounts), "accounts": len(accounts),
            "grants": sum(a.grants for a in accounts),
            "differences": [asdict(d) for a in accounts for d in a.differences],
            "in_flight": [a.account_id for a in accounts if a.redis == "in_flight"],
            "rebuilt": [a.account_id for a in accounts if a.redis == "rebuilt"]}


async def run_cli(settings: Any, account_id: str, page_size: int, clock: Clock) -> list[VerifyPage]:
    """Connect as the server does (QUOTA_POSTGRES_DSN, QUOTA_REDIS_URL, QUOTA_KEY_PREFIX) and check."""
    from quota_service.storage import redis_store
    from quota_service.storage.keys import Keys

    timeout_s = settings.backend_timeout_ms / 1000
    ledger = await PostgresLedger.connect(settings.postgres_dsn, pool_size=2, timeout_s=timeout_s)
    keys = Keys(settings.key_prefix)
    store = RedisStore(redis_store.connect(settings.redis_url, timeout_s=timeout_s, cluster=settings.redis_cluster,
                                           max_connections=4), keys)
    try:
        verifier = Verifier(ledger, store, Rebuilder(store, ledger, keys, clock), clock)
        return [page async for page in verifier.pages(account_id, page_size=page_size)]
    finally:
        await store.close()
        await ledger.close()


def main(settings: Any, argv: list[str]) -> int:
    """quota-service verify [--account ID] [--page-size N] [--json]: 0 clean, 1 a difference, 2 bad usage,
    3 a backend unavailable."""
    import argparse
    import json

    from quota_service.domain import validation as v
    from quota_service.domain.clock import SystemClock
    from quota_service.errors import QuotaError, StorageError

    p = argparse.ArgumentParser(prog="quota-service verify", description=(
        "Check that every grant equals the ledger (Postgres) and that Redis equals Postgres; a difference in "
        "Redis is repaired by a rebuild. Exit 0: none, 1: a difference, 2: bad usage, 3: a backend unavailable."))
    p.add_argument("--account", default="", help="one account (default: every account, in pages)")
    p.add_argument("--page-size", type=int, default=100, help="accounts per page, 1..1000")
    p.add_argument("--json", action="store_true", help="print JSON")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    if not settings.postgres_dsn or not settings.redis_url:
        print("quota-service verify: set QUOTA_POSTGRES_DSN and QUOTA_REDIS_URL (as for the server)", file=sys.stderr)
        return 2
    try:
        v.ident("account", args.account, required=False)
        if not 1 <= args.page_size <= MAX_PAGE:
            raise QuotaError(f"page-size: must be 1..{MAX_PAGE}")
        pages = asyncio.run(run_cli(settings, args.account, args.page_size, SystemClock()))
    except StorageError as exc:
        print(f"quota-service verify: unavailable: {exc}", file=sys.stderr)
        return 3
    except QuotaError as exc:
        print(f"quota-service verify: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report_json(pages), indent=2) if args.json else report_text(pages))
    return 1 if any(a.differences for p in pages for a in p.accounts) else 0
