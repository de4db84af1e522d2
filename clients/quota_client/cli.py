"""`quota-cli`: the operator's command line. Human-readable tables by default, --json for scripts.

    quota-cli [--target HOST:PORT] [--json] COMMAND ...
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from typing import Any

from quota_client.client import AsyncQuotaClient, QuotaClientError
from quota_client.results import Balance, Decision, MeterPolicy


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _show_decision(d: Decision) -> str:
    head = "GRANTED" if d.granted else f"DENIED {d.reason}"
    out = [f"{head}  amount={d.amount} remaining={d.remaining} ({d.remaining_pct:.1f}% left)"]
    if d.reservation_id:
        out.append(f"reservation {d.reservation_id} expires at {d.expires_at_ms} ms")
    if d.action:
        out.append(f"action: {d.action}")
    if d.overage_minor:
        out.append(f"overage: {d.overage_minor} {d.overage_currency} (minor units)")
    for a in d.alerts:
        out.append(f"alert: {a.meter} crossed {a.threshold_pct_left}% left")
    if d.dedup_hit:
        out.append("already counted in this window (dedup)")
    if d.replayed:
        out.append("(replayed answer of an earlier call with the same idempotency key)")
    return "\n".join(out)


def _show_balance(b: Balance) -> str:
    meters = _table([[m.bucket, str(m.granted), str(m.used), str(m.held), str(m.remaining), f"{m.remaining_pct:.1f}"]
                     for m in b.meters.values()], ["bucket", "granted", "used", "held", "remaining", "% left"])
    grants = _table([[g.grant_id, g.bucket, g.source, str(g.priority), str(g.granted), str(g.used), str(g.held),
                      str(g.remaining), str(g.expires_at_ms or "-")] for g in b.grants],
                    ["grant", "bucket", "source", "prio", "granted", "used", "held", "remaining", "expires_ms"])
    return f"account {b.account_id} ({b.status})\n\n{meters}\n\n{grants}"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="quota-cli", description="Operate the quota service.")
    p.add_argument("--target", default=os.environ.get("QUOTA_TARGET", "127.0.0.1:50051"),
                   help="host:port of the service (env QUOTA_TARGET)")
    p.add_argument("--api-key", default=None, help="API key qk_... (env QUOTA_API_KEY)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--timeout", type=float, default=5.0, help="deadline of each call in seconds")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("create-account", help="create an account")
    c.add_argument("account_id")
    c.add_argument("--org", default="")
    c.add_argument("--time-zone", default="UTC")
    c.add_argument("--meter", action="append", default=[], help="a meter the account uses (repeatable)")
    c.add_argument("--key", help="idempotency key (default: generated)")

    t = sub.add_parser("top-up", help="add a grant of units (--meter) or money (--currency, minor units)")
    t.add_argument("account_id")
    t.add_argument("amount", type=int)
    t.add_argument("--meter", default="")
    t.add_argument("--currency", default="")
    t.add_argument("--source", default="topup")
    t.add_argument("--priority", type=int, default=0)
    t.add_argument("--expires-at-ms", type=int, default=0)
    t.add_argument("--label", default="")
    t.add_argument("--key", help="idempotency key (default: generated)")

    for name, text in (("reserve", "hold units"), ("consume", "charge units now"), ("check", "dry run")):
        r = sub.add_parser(name, help=text)
        r.add_argument("account_id")
        r.add_argument("meter")
        r.add_argument("amount", type=int, nargs="?", default=1)
        if name != "check":
            r.add_argument("--key", help="idempotency key (default: generated)")

    cm = sub.add_parser("commit", help="finalize a reservation with the actual amount")
    cm.add_argument("account_id")
    cm.add_argument("reservation_id")
    cm.add_argument("actual_amount", type=int)
    cm.add_argument("--key")

    rl = sub.add_parser("release", help="return a reservation")
    rl.add_argument("account_id")
    rl.add_argument("reservation_id")
    rl.add_argument("--key")

    b = sub.add_parser("balance", help="balances per meter and per grant")
    b.add_argument("account_id")
    b.add_argument("--meter", default="")
    return p


async def run(args: argparse.Namespace) -> Any:
    async with AsyncQuotaClient(args.target, api_key=args.api_key, timeout_s=args.timeout) as c:
        key = getattr(args, "key", None)
        if args.command == "create-account":
            return await c.create_account(args.account_id, org_id=args.org, time_zone=args.time_zone,
                                          policies=[MeterPolicy(m) for m in args.meter], idempotency_key=key)
        if args.command == "top-up":
            grant, _ = await c.top_up(args.account_id, args.amount, meter=args.meter, currency=args.currency,
                                      source=args.source, priority=args.priority,
                                      expires_at_ms=args.expires_at_ms, label=args.label, idempotency_key=key)
            return grant
        if args.command in ("reserve", "consume"):
            fn = c.reserve if args.command == "reserve" else c.consume
            return await fn(args.account_id, args.meter, args.amount, idempotency_key=key)
        if args.command == "check":
            return await c.check(args.account_id, args.meter, args.amount)
        if args.command == "commit":
            return await c.commit(args.account_id, args.reservation_id, args.actual_amount, idempotency_key=key)
        if args.command == "release":
            return await c.release(args.account_id, args.reservation_id, idempotency_key=key)
        return await c.balance(args.account_id, args.meter)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except QuotaClientError as exc:
        print(f"quota-cli: {exc.code.name}: {exc.details}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(_jsonable(result), indent=2))
    elif isinstance(result, Decision):
        print(_show_decision(result))
    elif isinstance(result, Balance):
        print(_show_balance(result))
    else:
        print("\n".join(f"{k}: {v}" for k, v in _jsonable(result).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
