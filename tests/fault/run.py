"""Run the fault scenarios outside pytest and print their figures.

    python -m tests.fault.run            # the short versions (as in tests/fault/test_faults.py)
    python -m tests.fault.run --long     # more workers, more calls, longer outages, more dropped commits
    python -m tests.fault.run --long --only ambiguous_commit --json results.json

Starts its own embedded Postgres (scenario (b) stops it) and its own Valkey processes in a
temporary folder, all stopped on exit. Exits with 1 when an invariant failed (over-grants,
acknowledged-but-missing rows, duplicate effects), an acknowledged key did not replay as GRANTED,
a charged caller was told something else, a call failed with another code than UNAVAILABLE, a
balance disagreed with the ledger, or a fault could not be injected.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

from tests.fault.scenarios import CI, LONG, SCENARIOS, Figures, Shape, format_table, run_scenario
from tests.support.owned_backends import OwnedPostgres


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.fault.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--long", action="store_true", help=f"longer load: {LONG}")
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run only these scenarios")
    p.add_argument("--repeat", type=int, default=1, help="run each scenario this many times")
    p.add_argument("--workers", type=int, help="override the number of concurrent consumers")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--log-level", default="ERROR", help="the service's log level (default ERROR)")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    shape: Shape = LONG if args.long else CI
    if args.workers:
        shape = dataclasses.replace(shape, workers=args.workers)
    names = args.only or list(SCENARIOS)
    results: list[Figures] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="quota-faults-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        pg = await asyncio.to_thread(OwnedPostgres(root / "pg").start)
        try:
            for n in range(args.repeat):
                for name in names:
                    scenario = SCENARIOS[name]()
                    print(f"running {scenario.title} ...", file=sys.stderr, flush=True)
                    t0 = time.monotonic()
                    try:
                        f = await run_scenario(scenario, pg, shape, root / f"{name}-{n}")
                    except Exception as exc:  # keep going: the other scenarios' figures still count
                        traceback.print_exc()
                        failures.append(f"{name}: {type(exc).__name__}: {exc}")
                        continue
                    results.append(f)
                    print(f"  done in {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
                    if not f.invariants_hold:
                        failures.append(f"{name}: over={f.over_grants} missing={f.missing} dup={f.duplicates}")
                    if f.wrong_replays or f.charged_but_told_otherwise or f.errors or f.balance_mismatch:
                        failures.append(f"{name}: bad_replay={len(f.wrong_replays)} charged_but_told_otherwise="
                                        f"{f.charged_but_told_otherwise} errors={len(f.errors)} "
                                        f"balance_mismatch={len(f.balance_mismatch)}")
                    if not f.injections or "inject_error" in f.notes:
                        failures.append(f"{name}: the fault was not injected as planned: {f.notes.get('inject_error')}")
        finally:
            await asyncio.to_thread(pg.close)
    print()
    print(f"load: {shape}")
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(f) for f in results], indent=2, default=str))
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall invariants held: no over-grant, no acknowledged grant missing, no duplicate effect")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
