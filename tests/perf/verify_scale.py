"""`python -m tests.perf.verify_scale`: how long does the consistency check (N4) take on a big ledger?

Starts its own Valkey, a fresh Postgres database and the service process (tests/perf/stack.py),
creates a template account through the API, writes `--accounts` accounts with `--rows` charges in
SQL (tests/perf/large.py: the grants' `used` matches the history) and loads every account into Redis.
Then measures, through the real client: `Verify` of every account (streamed in pages of
`--page-size`), and of one account (median of `--repeat`). Asserts that the check finds nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

from quota_client import AsyncQuotaClient, MeterPolicy

from tests.perf import large, stack

METER = "ai_dialog"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.perf.verify_scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=1_000_000, help="ledger rows of charges, over every account")
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument("--repeat", type=int, default=7)
    a = p.parse_args(argv)
    log("starting Valkey, a fresh Postgres database and the service ...")
    st = await stack.start(log=log)
    try:
        async with AsyncQuotaClient(st.target, api_key=st.api_key, timeout_s=600) as client:
            await client.create_account("template", policies=[MeterPolicy(METER)])
            await client.top_up("template", 10**12, meter=METER, source="plan")
            ids, _ = await large.fill(st.dsn, "template", accounts=a.accounts, rows=a.rows, log=log, prefix="v-")
            await large.warm(st.valkey.url, st.dsn, stack.KEY_PREFIX, ids, log=log)
            t0 = time.perf_counter()
            every = await client.verify(page_size=a.page_size, timeout_s=3_600)
            all_s = time.perf_counter() - t0
            one = []
            for i in range(a.repeat):
                t0 = time.perf_counter()
                r = await client.verify(ids[(i * 7919) % len(ids)])
                one.append((time.perf_counter() - t0) * 1000)
                assert r.ok and r.accounts == 1, r
    finally:
        await st.stop()
    assert every.ok, every.differences[:10]
    print(f"consistency check on {a.rows:,} charges over {a.accounts:,} accounts ({every.accounts:,} with the "
          f"template, {every.grants:,} grants, all loaded in Redis); {platform.machine()}, {os.cpu_count()} cores "
          f"shared by the service, Valkey, Postgres and this client; Postgres {st.pg_kind}")
    print("| check | time | per account |")
    print("| --- | ---: | ---: |")
    print(f"| every account, pages of {a.page_size} | {all_s:.1f} s | {all_s * 1000 / every.accounts:.2f} ms |")
    print(f"| one account ({a.rows // a.accounts:,} entries), median of {a.repeat} | {statistics.median(one):.1f} ms | |")
    print(f"differences: {len(every.differences)}, in flight: {len(every.in_flight)}, rebuilt: {len(every.rebuilt)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
