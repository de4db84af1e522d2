"""`python -m tests.perf.reports_scale`: do the reports cost the same on a big ledger (N5, N8)?

Starts its own Valkey, a fresh Postgres database and the service process (tests/perf/stack.py),
creates a template account through the API and writes, in SQL, rows shaped like the service's
(tests/perf/large.py): one busy account with `--busy-rows` charges over 180 days, then accounts
with their own history until the ledger holds `--small` rows; measures the reports through the
real client; then grows the ledger to `--big` rows with more accounts and measures again.

Measured (median of `--repeat` runs, milliseconds): the first usage page of the busy account, a
page twenty pages deep, a page of a small account, the busy account's 90-day CSV export, its
3-month daily trend and the same trend split by channel. The busy account's rows are the same in
both rounds, so equal costs mean the ledger's size does not matter.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import asyncpg
from quota_client import AsyncQuotaClient, MeterPolicy

from tests.perf import large, stack

METER = "ai_dialog"
DAY_MS = 86_400_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def median_ms(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    await fn()  # warm: plans cached, pages of the indexes in memory
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


async def measure(client: AsyncQuotaClient, busy: str, small: list[str], repeat: int) -> dict[str, float]:
    now = int(time.time() * 1000)
    out: dict[str, float] = {}
    out["usage page (busy, newest)"] = await median_ms(lambda: client.usage(busy, page_size=100), repeat)
    token = ""
    for _ in range(20):
        token = (await client.usage(busy, page_size=100, page_token=token)).next_page_token
    deep = token
    out["usage page 20 deep (busy)"] = await median_ms(lambda: client.usage(busy, page_size=100, page_token=deep),
                                                        repeat)
    rnd = random.Random(7)
    out["usage page (random small account)"] = await median_ms(
        lambda: client.usage(small[rnd.randrange(len(small))], page_size=100), repeat)
    rows = 0

    async def export() -> None:
        nonlocal rows
        rows = await client.export_usage(busy, io.BytesIO(), from_ms=now - 90 * DAY_MS, to_ms=now)

    out["export 90 days (busy)"] = await median_ms(export, max(1, repeat // 2))
    out["  rows exported"] = rows
    out["trend 3 months daily (busy)"] = await median_ms(
        lambda: client.trend(busy, from_ms=now - 90 * DAY_MS, to_ms=now, meter=METER), repeat)
    out["trend 3 months by channel (busy)"] = await median_ms(
        lambda: client.trend(busy, from_ms=now - 90 * DAY_MS, to_ms=now, meter=METER, group_by="channel"), repeat)
    return out


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.perf.reports_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=1_000_000, help="ledger rows of the first round")
    p.add_argument("--big", type=int, default=10_000_000, help="ledger rows of the second round")
    p.add_argument("--accounts", type=int, default=10_000, help="accounts with a history, over both rounds")
    p.add_argument("--busy-rows", type=int, default=100_000, help="charges of the busy account (180 days)")
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args(argv)
    log("starting Valkey, a fresh Postgres database and the service ...")
    st = await stack.start(log=log)
    results: list[tuple[int, dict[str, float]]] = []
    try:
        async with AsyncQuotaClient(st.target, api_key=st.api_key, timeout_s=300) as client:
            await client.create_account("template", policies=[MeterPolicy(METER)])
            await client.top_up("template", 10**12, meter=METER, source="plan")
            busy_ids, _ = await large.fill(st.dsn, "template", accounts=1, rows=a.busy_rows, log=log, prefix="busy-")
            busy = busy_ids[0]
            half = a.accounts // 2
            first = max(a.small - a.busy_rows, half)
            small_ids, _ = await large.fill(st.dsn, "template", accounts=half, rows=first, log=log, prefix="s-")
            conn = await asyncpg.connect(st.dsn)
            try:
                for label, more_rows, prefix in (("first", 0, ""), ("second", a.big - a.small, "m-")):
                    if more_rows > 0:
                        await large.fill(st.dsn, "template", accounts=a.accounts - half, rows=more_rows, log=log,
                                         prefix=prefix)
                    total = await conn.fetchval("SELECT count(*) FROM ledger")
                    log(f"measuring the {label} round: {total:,} ledger rows ...")
                    results.append((total, await measure(client, busy, small_ids, a.repeat)))
                parts = await conn.fetchval("SELECT count(*) FROM pg_inherits WHERE inhparent = 'ledger'::regclass")
                accounts = await conn.fetchval("SELECT count(*) FROM accounts")
            finally:
                await conn.close()
    finally:
        await st.stop()
    (n1, r1), (n2, r2) = results
    print(f"reports on a {n1:,}-row and a {n2:,}-row ledger ({accounts:,} accounts, {parts} partitions); "
          f"{platform.machine()}, {os.cpu_count()} cores shared by the service, Valkey, Postgres and this "
          f"client; Postgres {st.pg_kind}; median of {a.repeat} runs, ms")
    print(f"| query | {n1:,} rows | {n2:,} rows | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for key in r1:
        if key.startswith("  "):
            print(f"| {key.strip()} | {int(r1[key]):,} | {int(r2[key]):,} | |")
            continue
        print(f"| {key} | {r1[key]:.1f} | {r2[key]:.1f} | {r2[key] / r1[key]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
