"""Usage rows (R2, QA4), the CSV export (R3, QA4, QC9) and trends (R3, QC8), from the ledger.

A usage row is one ledger row of a charge: a Consume, or the Commit of a reservation, one row per
grant it was taken from (a wallet's row, bucket "$IDR", holds the overage in minor units). SQL is in
usage_sql.py, CSV columns in usage_csv.py, range caps and trend buckets in usage_range.py.

Range caps come from the plan catalogue of the account's subscription (``reports:``, kind csv for
the rows and the export, kind trend for trends): the strictest cap of the reports that cover the
meter asked for; DEFAULT_REPORT_RANGE_DAYS (92) for an account without a subscription or a report
without a cap. A longer range is refused (INVALID_ARGUMENT on from_ms, naming the cap) before any
row is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from quota.v1 import quota_pb2 as pb

from quota_service.catalogue import CatalogueSet
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.errors import InvalidArgument, NotFound, StorageError
from quota_service.reports import cursor
from quota_service.reports import usage_sql as sql
from quota_service.reports.usage_csv import CsvWriter, check_attribute_columns, iso_utc
from quota_service.reports.usage_range import (
    GRANULARITIES,
    Cap,
    buckets,
    dt_to_ms,
    dt_to_us,
    ms_to_dt,
    range_cap,
    resolve_range,
    us_to_dt,
)
from quota_service.storage.postgres import _UNREACHABLE, PostgresLedger

CHUNK_ROWS = 1000  # data rows per ExportChunk at most ...
CHUNK_BYTES = 1 << 20  # ... and about this much CSV, well under the 4 MiB a gRPC message may carry
FETCH_ROWS = 500  # rows per round trip of the export's server-side cursor
QUERY_TIMEOUT_S = 120.0  # a report query may take longer than a hot-path one (the pool's timeout)
MAX_TREND_DAYS = 92
MAX_TREND_POINTS = 100_000  # series x buckets in one answer (about 3 MB)
TOKEN_KIND = "usage"
# a usage token: the last row's (occurred_at in µs, entry_id), the resolved range, the filter's fingerprint
_TOKEN_FIELDS: dict[str, type] = {"t": int, "e": int, "f": int, "u": int, "h": str}


@dataclass(frozen=True)
class _Account:
    time_zone: str
    product: str | None
    meters: tuple[str, ...]


@dataclass(frozen=True)
class _Filter:
    account_id: str
    meter: str
    attributes: dict[str, str]
    from_ms: int  # as asked (0 = default)
    to_ms: int

    def fingerprint(self) -> str:
        """Binds a page token to the filter it was issued for."""
        body = json.dumps([self.account_id, self.meter, sorted(self.attributes.items()), self.from_ms, self.to_ms])
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _filter(f: pb.UsageFilter) -> _Filter:
    return _Filter(v.ident("filter.account_id", f.account_id), v.ident("filter.meter", f.meter, required=False),
                   v.attributes(f.attributes), v.time_ms("filter.from_ms", f.from_ms),
                   v.time_ms("filter.to_ms", f.to_ms))


def _attrs(raw: Any) -> dict[str, str]:
    return {str(k): str(val) for k, val in raw.items()} if isinstance(raw, dict) else {}


class UsageReports:
    def __init__(self, ledger: PostgresLedger, clock: Clock, catalogues: CatalogueSet | None,
                 tokens: cursor.PageTokens) -> None:
        self.ledger = ledger
        self.clock = clock
        self.catalogues = catalogues
        self.tokens = tokens

    # -- shared ---------------------------------------------------------------------------------

    async def _account(self, account_id: str, field: str) -> _Account:
        row = await self.ledger.run(lambda c: c.fetchrow(sql.ACCOUNT, account_id, timeout=QUERY_TIMEOUT_S))
        if row is None:
            raise NotFound(field, f"unknown account {account_id!r}")
        return _Account(row["time_zone"] or "UTC", row["product"], tuple(row["meters"] or ()))

    def _cap(self, account: _Account, kind: str, meter: str) -> Cap:
        catalogue = None
        if account.product is not None and self.catalogues is not None:
            catalogue = self.catalogues.get(account.product)
        return range_cap(catalogue, account.product, kind, meter)

    async def _range(self, f: _Filter) -> tuple[int, int]:
        account = await self._account(f.account_id, "filter.account_id")
        cap = self._cap(account, "csv", f.meter)
        return resolve_range(f.from_ms, f.to_ms, self.clock.now_ms(), cap, report="usage report",
                             from_field="filter.from_ms", to_field="filter.to_ms")

    @staticmethod
    def _args(f: _Filter, from_ms: int, to_ms: int) -> list[Any]:
        # $1..$5 of USAGE_ROWS
        return [f.account_id, ms_to_dt(from_ms), ms_to_dt(to_ms), f.meter, f.attributes or None]

    # -- ListUsage ------------------------------------------------------------------------------

    async def page(self, req: pb.ListUsageRequest) -> pb.UsagePage:
        """One page of usage rows, newest first by (occurred_at, entry_id).

        The token holds the last row's position and the resolved range, so later pages continue
        strictly below that position within the same range: rows written meanwhile (always newer,
        or at least later in entry order) never shift, repeat or hide rows of later pages.
        """
        f = _filter(req.filter)
        size = cursor.page_size(req.page_size)
        position = None
        if req.page_token:
            position = self.tokens.decode(TOKEN_KIND, req.page_token, _TOKEN_FIELDS)
            if position["h"] != f.fingerprint():
                raise InvalidArgument("page_token", "was issued for another filter: keep the filter while paging")
        if position is not None:
            from_ms, to_ms = position["f"], position["u"]
            try:
                if from_ms > to_ms:
                    raise ValueError("range")
                after_at, after_entry = us_to_dt(position["t"]), position["e"]
            except (ValueError, OverflowError) as exc:
                raise InvalidArgument("page_token", "is not a token this service issued") from exc
            await self._account(f.account_id, "filter.account_id")
        else:
            from_ms, to_ms = await self._range(f)
            after_at, after_entry = ms_to_dt(to_ms), 0
        args = [*self._args(f, from_ms, to_ms), after_at, after_entry, size + 1]
        rows = await self.ledger.run(lambda c: c.fetch(sql.USAGE_ROWS, *args, timeout=QUERY_TIMEOUT_S))
        out = pb.UsagePage(rows=[self._row(f.account_id, r) for r in rows[:size]])
        if len(rows) > size:
            last = rows[size - 1]
            out.next_page_token = self.tokens.encode(TOKEN_KIND, {
                "t": dt_to_us(last["occurred_at"]), "e": last["entry_id"], "f": from_ms, "u": to_ms,
                "h": f.fingerprint()})
        return out

    @staticmethod
    def _row(account_id: str, r: asyncpg.Record) -> pb.UsageRow:
        return pb.UsageRow(entry_id=r["entry_id"], account_id=account_id, occurred_at_ms=dt_to_ms(r["occurred_at"]),
                           meter=r["meter"] or "", bucket=r["bucket"] or "", grant_id=r["grant_id"] or "",
                           kind=r["kind"], amount=r["d_used"], running_used=r["running_used"],
                           attributes=_attrs(r["attrs"]), idempotency_key=r["idempotency_key"] or "")

    # -- ExportUsage ----------------------------------------------------------------------------

    async def export(self, req: pb.ExportUsageRequest) -> AsyncIterator[pb.ExportChunk]:
        """The rows of ListUsage as CSV (columns: usage_csv.py), header first, in chunks.

        Every check (input, account, range cap) happens before the first chunk. The rows come from
        one server-side cursor in one read-only REPEATABLE READ transaction: a consistent snapshot,
        never whole in memory.
        """
        f = _filter(req.filter)
        columns = check_attribute_columns(list(req.attribute_columns))
        from_ms, to_ms = await self._range(f)
        out = CsvWriter(columns)
        out.header()
        sent = False
        args = [*self._args(f, from_ms, to_ms), ms_to_dt(to_ms), 0, None]
        async for batch in self._cursor(sql.USAGE_ROWS, args):
            for r in batch:
                out.row((r["entry_id"], iso_utc(dt_to_ms(r["occurred_at"])), f.account_id, r["meter"] or "",
                         r["bucket"] or "", r["grant_id"] or "", r["kind"], r["d_used"], r["running_used"],
                         r["idempotency_key"] or ""), _attrs(r["attrs"]))
                if out.rows >= CHUNK_ROWS or out.size() >= CHUNK_BYTES:
                    data, n = out.take()
                    yield pb.ExportChunk(csv=data, rows=n)
                    sent = True
        data, n = out.take()
        if n or not sent:  # the header alone when there are no rows
            yield pb.ExportChunk(csv=data, rows=n)

    async def _cursor(self, query: str, args: Sequence[Any]) -> AsyncIterator[list[asyncpg.Record]]:
        """Batches of a query's rows from one pooled connection held for the whole read.

        A read that ends any other way than completely (an error, a caller that went away) closes
        the connection rather than returning it mid-transaction, as PostgresLedger does.
        """
        pool = self.ledger.pool
        try:
            conn = await pool.acquire(timeout=self.ledger.timeout_s)
        except _UNREACHABLE as exc:
            raise StorageError(f"postgres: {exc!r}") from exc
        done = False
        try:
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            cur = await conn.cursor(query, *args, timeout=QUERY_TIMEOUT_S)
            while batch := await cur.fetch(FETCH_ROWS, timeout=QUERY_TIMEOUT_S):
                yield batch
            await tx.commit()
            done = True
        except _UNREACHABLE as exc:
            raise StorageError(f"postgres: {exc!r}") from exc
        finally:
            if done:
                await pool.release(conn, timeout=self.ledger.timeout_s)
            else:
                # a connection that was lost is already detached from the pool (and releasing it is a no-op)
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
                await pool.release(conn)

    # -- GetTrend -------------------------------------------------------------------------------

    async def trend(self, req: pb.GetTrendRequest) -> pb.Trend:
        """Units and charges per bucket (local day or hour), per meter and group_by value; zeros included."""
        account_id = v.ident("account_id", req.account_id)
        meter = v.ident("meter", req.meter, required=False)
        group_by = v.ident("group_by", req.group_by, required=False, max_len=64)
        granularity = req.granularity or "day"
        if granularity not in GRANULARITIES:
            raise InvalidArgument("granularity", f"{req.granularity[:32]!r} is not one of {', '.join(GRANULARITIES)}")
        v.time_ms("from_ms", req.from_ms)
        v.time_ms("to_ms", req.to_ms)
        account = await self._account(account_id, "account_id")
        cap = self._cap(account, "trend", meter)
        if cap.days > MAX_TREND_DAYS:  # the API's own limit (quota.proto), whatever a catalogue allows
            cap = Cap(MAX_TREND_DAYS, "the trend's limit")
        from_ms, to_ms = resolve_range(req.from_ms, req.to_ms, self.clock.now_ms(), cap, report="trend",
                                       from_field="from_ms", to_field="to_ms")
        zone = ZoneInfo(account.time_zone)
        points = buckets(from_ms, to_ms, zone, granularity)
        args = [account_id, ms_to_dt(points[0][0]), ms_to_dt(to_ms), meter, group_by,
                [ms_to_dt(start) for start, _ in points]]
        rows = await self.ledger.run(lambda c: c.fetch(sql.TREND, *args, timeout=QUERY_TIMEOUT_S))

        cells: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
        for r in rows:
            cells.setdefault((r["meter"] or "", r["grp"]), {})[r["b"] - 1] = (r["amount"], r["events"])
        # a meter without charges in the range still gets its line of zeros
        for m in ([meter] if meter else self._trend_meters(account)):
            if not any(key[0] == m for key in cells):
                cells[(m, "")] = {}
        if len(cells) * len(points) > MAX_TREND_POINTS:
            raise InvalidArgument("group_by", f"{len(cells)} series x {len(points)} buckets is more than "
                                              f"{MAX_TREND_POINTS} points: narrow the range, pick a meter or use days")
        out = pb.Trend(time_zone=account.time_zone)
        for (m, group), values in sorted(cells.items()):
            series = out.series.add(meter=m, group=group)
            for i, (start, label) in enumerate(points):
                amount, events = values.get(i, (0, 0))
                series.points.add(start_ms=start, label=label, amount=amount, events=events)
        return out

    def _trend_meters(self, account: _Account) -> list[str]:
        """The account's meters (grants and policies), without capacity meters (held, never charged)."""
        catalogue = self.catalogues.get(account.product) if self.catalogues and account.product else None
        return [m for m in account.meters
                if catalogue is None or m not in catalogue.meters or catalogue.meters[m].kind != "capacity"]
