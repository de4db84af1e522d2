"""Usage rows (R2, QA4), the CSV export (R3, QA4, QC9) and trends (R3, QC8), from the ledger.

A usage row is one ledger row of a charge: a Consume, or the Commit of a reservation, one row per
grant it was taken from (a wallet's row, bucket "$IDR", holds the overage in minor units). SQL is in
the named queries of storage/sql/queries/reports.sql, CSV columns in usage_csv.py, range caps and
trend buckets in usage_range.py; the answers are the plain values of model.py.

Range caps come from the plan catalogue of the account's subscription (``reports:``, kind csv for
the rows and the export, kind trend for trends): the strictest cap of the reports that cover the
meter asked for; DEFAULT_REPORT_RANGE_DAYS (92) for an account without a subscription or a report
without a cap. A longer range is refused (INVALID_ARGUMENT on from_ms, naming the cap) before any
row is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from quota_service.catalogue import CatalogueSet
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.errors import InvalidArgument, NotFound
from quota_service.periodic import cancel_and_wait
from quota_service.reports import cursor
from quota_service.reports.model import (
    CsvChunk,
    Trend,
    TrendPoint,
    TrendQuery,
    TrendSeries,
    UsageFilter,
    UsagePage,
    UsageRow,
)
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
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

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


def _filter(f: UsageFilter) -> _Filter:
    return _Filter(v.ident("filter.account_id", f.account_id), v.ident("filter.meter", f.meter, required=False),
                   v.attributes(f.attributes), v.time_ms("filter.from_ms", f.from_ms),
                   v.time_ms("filter.to_ms", f.to_ms))


def _attrs(raw: Any) -> dict[str, str]:
    return {str(k): str(val) for k, val in raw.items()} if isinstance(raw, dict) else {}


def _usage_row(account_id: str, r: asyncpg.Record) -> UsageRow:
    return UsageRow(entry_id=r["entry_id"], account_id=account_id, occurred_at_ms=dt_to_ms(r["occurred_at"]),
                    meter=r["meter"] or "", bucket=r["bucket"] or "", grant_id=r["grant_id"] or "", kind=r["kind"],
                    amount=r["d_used"], running_used=r["running_used"], attributes=_attrs(r["attrs"]),
                    idempotency_key=r["idempotency_key"] or "")


def _csv_values(row: UsageRow) -> tuple[object, ...]:
    """The fixed columns of a row of the export (usage_csv.FIXED_COLUMNS), in order."""
    return (row.entry_id, iso_utc(row.occurred_at_ms), row.account_id, row.meter, row.bucket, row.grant_id, row.kind,
            row.amount, row.running_used, row.idempotency_key)


class UsageReports:
    def __init__(self, ledger: PostgresLedger, clock: Clock, catalogues: CatalogueSet | None,
                 tokens: cursor.PageTokens) -> None:
        self.ledger = ledger
        self.clock = clock
        self.catalogues = catalogues
        self.tokens = tokens

    # -- shared ---------------------------------------------------------------------------------

    async def _account(self, account_id: str, field: str) -> _Account:
        row = await self.ledger.run(lambda c: c.fetchrow(Q["usage_account"], account_id, timeout=QUERY_TIMEOUT_S))
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
        # $1..$5 of usage_rows
        return [f.account_id, ms_to_dt(from_ms), ms_to_dt(to_ms), f.meter, f.attributes or None]

    # -- ListUsage ------------------------------------------------------------------------------

    async def page(self, usage_filter: UsageFilter, page_size: int = 0, page_token: str = "") -> UsagePage:
        """One page of usage rows, newest first by (occurred_at, entry_id).

        The token holds the last row's position and the resolved range, so later pages continue
        strictly below that position within the same range: rows written meanwhile (always newer,
        or at least later in entry order) never shift, repeat or hide rows of later pages.
        """
        f = _filter(usage_filter)
        size = cursor.page_size(page_size)
        if page_token:
            from_ms, to_ms, after_at, after_entry = self._position(f, page_token)
            await self._account(f.account_id, "filter.account_id")
        else:
            from_ms, to_ms = await self._range(f)
            after_at, after_entry = ms_to_dt(to_ms), 0
        args = [*self._args(f, from_ms, to_ms), after_at, after_entry, size + 1]
        rows = await self.ledger.run(lambda c: c.fetch(Q["usage_rows"], *args, timeout=QUERY_TIMEOUT_S))
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self.tokens.encode(TOKEN_KIND, {"t": dt_to_us(last["occurred_at"]), "e": last["entry_id"],
                                                    "f": from_ms, "u": to_ms, "h": f.fingerprint()})
        return UsagePage(tuple(_usage_row(f.account_id, r) for r in rows[:size]), token)

    def _position(self, f: _Filter, token: str) -> tuple[int, int, Any, int]:
        """(from_ms, to_ms, occurred_at, entry_id) of a page token: the range it was issued for and the
        last row it showed."""
        position = self.tokens.decode(TOKEN_KIND, token, _TOKEN_FIELDS)
        if position["h"] != f.fingerprint():
            raise InvalidArgument("page_token", "was issued for another filter: keep the filter while paging")
        from_ms, to_ms = position["f"], position["u"]
        try:
            if from_ms > to_ms:
                raise ValueError("range")
            return from_ms, to_ms, us_to_dt(position["t"]), position["e"]
        except (ValueError, OverflowError) as exc:
            raise InvalidArgument("page_token", "is not a token this service issued") from exc

    # -- ExportUsage ----------------------------------------------------------------------------

    async def export(self, usage_filter: UsageFilter, attribute_columns: Sequence[str] = (), *,
                     raw: bool = False) -> AsyncIterator[CsvChunk]:
        """The rows of ListUsage as CSV (columns: usage_csv.py), header first, in chunks; raw: values
        exactly as stored, else text cells made safe for spreadsheets (usage_csv.py).

        Every check (input, account, range cap) happens before the first chunk. The rows come from
        one server-side cursor in one read-only REPEATABLE READ transaction: a consistent snapshot,
        never whole in memory.
        """
        f = _filter(usage_filter)
        columns = check_attribute_columns(list(attribute_columns))
        from_ms, to_ms = await self._range(f)
        out = CsvWriter(columns, raw=raw)
        out.header()
        sent = False
        args = [*self._args(f, from_ms, to_ms), ms_to_dt(to_ms), 0, None]
        async for batch in self._cursor(Q["usage_rows"], args):
            for r in batch:
                row = _usage_row(f.account_id, r)
                out.row(_csv_values(row), row.attributes)
                if out.rows >= CHUNK_ROWS or out.size() >= CHUNK_BYTES:
                    data, n = out.take()
                    yield CsvChunk(data, n)
                    sent = True
        data, n = out.take()
        if n or not sent:  # the header alone when there are no rows
            yield CsvChunk(data, n)

    async def _cursor(self, query: str, args: Sequence[Any]) -> AsyncIterator[list[asyncpg.Record]]:
        """Batches of a query's rows from one pooled connection held for the whole read.

        The read runs in a task on the ledger's connection (PostgresLedger.run: a connection whose
        read ends any other way than completely, an error or a caller that went away, is closed
        rather than returned mid-transaction; an unreachable server is a StorageError). It stays at
        most one batch ahead of the caller.
        """
        batches: asyncio.Queue[list[asyncpg.Record] | BaseException | None] = asyncio.Queue(1)

        async def read(conn: asyncpg.Connection) -> None:
            # started and committed by hand: on any failure the connection is closed, never rolled back
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            cur = await conn.cursor(query, *args, timeout=QUERY_TIMEOUT_S)
            while batch := await cur.fetch(FETCH_ROWS, timeout=QUERY_TIMEOUT_S):
                await batches.put(batch)
            await tx.commit()

        async def produce() -> None:
            try:
                await self.ledger.run(read)
            except Exception as exc:
                await batches.put(exc)
            else:
                await batches.put(None)

        reader = asyncio.create_task(produce(), name="usage-export")
        try:
            while (item := await batches.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            await cancel_and_wait(reader)

    # -- GetTrend -------------------------------------------------------------------------------

    async def trend(self, q: TrendQuery) -> Trend:
        """Units and charges per bucket (local day or hour), per meter and group_by value; zeros included."""
        account_id = v.ident("account_id", q.account_id)
        meter = v.ident("meter", q.meter, required=False)
        group_by = v.ident("group_by", q.group_by, required=False, max_len=64)
        granularity = q.granularity or "day"
        if granularity not in GRANULARITIES:
            raise InvalidArgument("granularity", f"{q.granularity[:32]!r} is not one of {', '.join(GRANULARITIES)}")
        v.time_ms("from_ms", q.from_ms)
        v.time_ms("to_ms", q.to_ms)
        account = await self._account(account_id, "account_id")
        cap = self._cap(account, "trend", meter)
        if cap.days > MAX_TREND_DAYS:  # the API's own limit (quota.proto), whatever a catalogue allows
            cap = Cap(MAX_TREND_DAYS, "the trend's limit")
        from_ms, to_ms = resolve_range(q.from_ms, q.to_ms, self.clock.now_ms(), cap, report="trend",
                                       from_field="from_ms", to_field="to_ms")
        points = buckets(from_ms, to_ms, ZoneInfo(account.time_zone), granularity)
        args = [account_id, ms_to_dt(points[0][0]), ms_to_dt(to_ms), meter, group_by,
                [ms_to_dt(start) for start, _ in points]]
        rows = await self.ledger.run(lambda c: c.fetch(Q["usage_trend"], *args, timeout=QUERY_TIMEOUT_S))

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
        return Trend(account.time_zone, tuple(
            TrendSeries(m, group, tuple(TrendPoint(start, label, *values.get(i, (0, 0)))
                                        for i, (start, label) in enumerate(points)))
            for (m, group), values in sorted(cells.items())))

    def _trend_meters(self, account: _Account) -> list[str]:
        """The account's meters (grants and policies), without capacity meters (held, never charged)."""
        catalogue = self.catalogues.get(account.product) if self.catalogues and account.product else None
        return [m for m in account.meters
                if catalogue is None or m not in catalogue.meters or catalogue.meters[m].kind != "capacity"]
