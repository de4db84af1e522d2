"""`quota-cli`: the operator's command line. Human-readable tables by default, --json for scripts.

    quota-cli [--target HOST:PORT] [--json] COMMAND ...

Times are given as ISO 8601 (2026-11-01, 2026-11-01T09:30, 2026-11-01T09:30+07:00; without an
offset they are UTC) or as milliseconds since the epoch.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from quota_client.client import AsyncQuotaClient, QuotaClientError
from quota_client.results import (
    AccountPage,
    Balance,
    Decision,
    MeterPolicy,
    Statement,
    TransactionPage,
    Trend,
    UsagePage,
    VerifyReport,
)


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


def when_ms(text: str) -> int:
    """ISO 8601 date or date-time (UTC unless it has an offset), or milliseconds since the epoch."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an ISO 8601 time nor milliseconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if ms else "-"


def _attr(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def _bars(values: list[int], width: int = 40) -> list[str]:
    """One bar per value, scaled to the largest, in eighths of a character."""
    top = max(values, default=0)
    blocks = " ▏▎▍▌▋▊▉"
    out = []
    for v in values:
        eighths = round(v * width * 8 / top) if top else 0
        out.append("█" * (eighths // 8) + (blocks[eighths % 8] if eighths % 8 else ""))
    return out


def _more(page: UsagePage | TransactionPage | AccountPage) -> str:
    """How to ask for the next page."""
    token = page.next_page_token
    return f"\n\nmore: --page-token {token}" if token else ""


def _show_usage(page: UsagePage) -> str:
    rows = [[_iso(r.occurred_at_ms), r.meter, r.bucket, str(r.amount), str(r.running_used),
             r.attributes.get("room_id", ""), r.attributes.get("channel", ""), r.kind, r.grant_id] for r in page.rows]
    out = _table(rows, ["time (UTC)", "meter", "bucket", "amount", "running", "room", "channel", "kind", "grant"])
    return out + _more(page)


def _show_trend(trend: Trend) -> str:
    parts = [f"time zone {trend.time_zone}"]
    for series in trend.series:
        title = series.meter + (f" / {series.group}" if series.group else "")
        amounts = [p.amount for p in series.points]
        bars = _bars(amounts)
        total = sum(amounts)
        lines = [f"{p.label:<13} {p.amount:>10}  {bar}" for p, bar in zip(series.points, bars, strict=True)]
        parts.append(f"\n{title} (total {total})\n" + "\n".join(lines))
    return "\n".join(parts)


def _show_transactions(page: TransactionPage | Statement) -> str:
    rows = [[_iso(t.occurred_at_ms), t.kind, t.bucket, f"{t.amount:+d}", t.source, t.label, t.grant_id]
            for t in page.transactions]
    out = _table(rows, ["time (UTC)", "kind", "bucket", "amount", "source", "label", "grant"])
    return out + (_more(page) if isinstance(page, TransactionPage) else "")


def _show_statement(st: Statement) -> str:
    state = "closed" if st.closed else "open"
    head = (f"statement of {st.account_id}: {st.product} {st.plan}, cycle {st.cycle} "
            f"[{_iso(st.cycle_start_ms)} .. {_iso(st.cycle_end_ms)}) {state}")
    lines = _table([[ln.bucket, str(ln.opening), str(ln.granted), str(ln.used), str(ln.forfeited), str(ln.closing),
                     str(ln.overage_units), f"{ln.overage_minor} {ln.overage_currency}".strip()] for ln in st.lines],
                   ["bucket", "opening", "granted", "used", "forfeited", "closing", "overage units", "overage cost"])
    out = f"{head}\n\n{lines}"
    if st.transactions:
        out += "\n\n" + _show_transactions(st)
    return out


def _show_accounts(page: AccountPage) -> str:
    rows = []
    for a in page.accounts:
        meters = ", ".join(f"{m.bucket} {m.remaining}/{m.granted}" for m in a.meters)
        rows.append([a.account_id, (a.plan and f"{a.product}/{a.plan}") or "-", a.status.lower(),
                     _iso(a.cycle_end_ms), _iso(a.next_expiry_ms), meters])
    out = _table(rows, ["account", "plan", "status", "cycle ends", "next expiry", "remaining/granted"])
    return out + _more(page)


def _show_verify(report: VerifyReport) -> str:
    n, g, d = report.accounts, report.grants, len(report.differences)
    head = (f"checked {n} account{'s' * (n != 1)}, {g} grant{'s' * (g != 1)}: "
            + ("balances equal the ledger" if report.ok else f"{d} difference{'s' * (d != 1)}"))
    out = [head]
    if report.differences:
        out.append("")
        out.append(_table([[d.account_id, d.grant_id or "-", d.store, d.field, str(d.expected), str(d.actual),
                            "repaired" if d.repaired else "-", d.detail] for d in report.differences],
                          ["account", "grant", "store", "field", "expected", "actual", "redis", "detail"]))
    if report.in_flight:
        out.append(f"\nin flight (Redis not compared): {', '.join(report.in_flight)}")
    if report.rebuilt:
        out.append(f"\nrebuilt (unconfirmed mutations past their deadline): {', '.join(report.rebuilt)}")
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
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
    t.add_argument("--kind", default="", help="a top-up kind of the catalogue (a wallet's top_ups, or a pack)")
    t.add_argument("--source", default="", help="default: topup, or the kind's")
    t.add_argument("--priority", type=int, default=None, help="default: the kind's, or 100 (0 is a priority)")
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
    b.add_argument("--as-of", type=when_ms, default=0, help="the balance at this past time, from the ledger")

    def report_range(r: argparse.ArgumentParser) -> None:
        r.add_argument("--from", dest="from_ms", type=when_ms, default=0, help="start, inclusive")
        r.add_argument("--to", dest="to_ms", type=when_ms, default=0, help="end, exclusive (default now)")

    u = sub.add_parser("usage", help="usage rows, newest first")
    u.add_argument("account_id")
    report_range(u)
    u.add_argument("--meter", default="")
    u.add_argument("--attr", type=_attr, action="append", default=[], help="KEY=VALUE filter (repeatable)")
    u.add_argument("--page-size", type=int, default=50)
    u.add_argument("--page-token", default="")

    e = sub.add_parser("export", help="usage rows as CSV, streamed into a file")
    e.add_argument("account_id")
    report_range(e)
    e.add_argument("--meter", default="")
    e.add_argument("--attr", type=_attr, action="append", default=[], help="KEY=VALUE filter (repeatable)")
    e.add_argument("--column", action="append", default=[], help="an attribute to give its own column (repeatable)")
    e.add_argument("--out", required=True, help="the CSV file to write ('-' for standard output)")

    tr = sub.add_parser("trend", help="usage per day or hour, with a small chart")
    tr.add_argument("account_id")
    report_range(tr)
    tr.add_argument("--meter", default="")
    tr.add_argument("--group-by", default="", help="an attribute to split by, e.g. category or channel")
    tr.add_argument("--hourly", action="store_true", help="hours instead of days")

    tx = sub.add_parser("transactions", help="top-ups, purchases, cycle grants, settlements ...")
    tx.add_argument("account_id")
    report_range(tx)
    tx.add_argument("--kind", action="append", default=[], help="only this kind (repeatable)")
    tx.add_argument("--page-size", type=int, default=50)
    tx.add_argument("--page-token", default="")

    st = sub.add_parser("statement", help="what a subscription cycle billed")
    st.add_argument("account_id")
    st.add_argument("--cycle", type=int, default=-1, help="cycle number (default: the current one)")

    ac = sub.add_parser("accounts", help="every account of an organization")
    ac.add_argument("org_id")
    ac.add_argument("--page-size", type=int, default=100)
    ac.add_argument("--page-token", default="")

    vf = sub.add_parser("verify", help="check that balances equal the ledger, and Redis Postgres (exit 1: a difference)")
    vf.add_argument("account_id", nargs="?", default="", help="one account (default: every account)")
    vf.add_argument("--page-size", type=int, default=0, help="accounts per page (default 100)")
    vf.add_argument("--after", default="", help="every account: start after this one")
    return p


async def run(args: argparse.Namespace) -> Any:
    async with AsyncQuotaClient(args.target, api_key=args.api_key, timeout_s=args.timeout) as c:
        key = getattr(args, "key", None)
        if args.command == "create-account":
            return await c.create_account(args.account_id, org_id=args.org, time_zone=args.time_zone,
                                          policies=[MeterPolicy(m) for m in args.meter], idempotency_key=key)
        if args.command == "top-up":
            grant, _ = await c.top_up(args.account_id, args.amount, meter=args.meter, currency=args.currency,
                                      kind=args.kind, source=args.source, priority=args.priority,
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
        if args.command == "usage":
            return await c.usage(args.account_id, from_ms=args.from_ms, to_ms=args.to_ms, meter=args.meter,
                                 attributes=dict(args.attr), page_size=args.page_size, page_token=args.page_token)
        if args.command == "export":
            return await _export(c, args)
        if args.command == "trend":
            return await c.trend(args.account_id, from_ms=args.from_ms, to_ms=args.to_ms, meter=args.meter,
                                 group_by=args.group_by, granularity="hour" if args.hourly else "day")
        if args.command == "transactions":
            return await c.transactions(args.account_id, from_ms=args.from_ms, to_ms=args.to_ms,
                                        kinds=tuple(args.kind), page_size=args.page_size, page_token=args.page_token)
        if args.command == "statement":
            return await c.statement(args.account_id, args.cycle)
        if args.command == "accounts":
            return await c.accounts(args.org_id, page_size=args.page_size, page_token=args.page_token)
        if args.command == "verify":
            return await c.verify(args.account_id, page_size=args.page_size, after_account_id=args.after,
                                  timeout_s=max(args.timeout, 300.0))
        return await c.balance(args.account_id, args.meter, as_of_ms=args.as_of)


async def _export(c: AsyncQuotaClient, args: argparse.Namespace) -> dict[str, Any]:
    kwargs = dict(from_ms=args.from_ms, to_ms=args.to_ms, meter=args.meter, attributes=dict(args.attr),
                  attribute_columns=tuple(args.column))
    if args.out == "-":
        rows = await c.export_usage(args.account_id, sys.stdout.buffer, **kwargs)
        sys.stdout.buffer.flush()
        return {"rows": rows, "file": "-"}
    part = f"{args.out}.part"
    try:
        with open(part, "wb") as out:  # written chunk by chunk as they arrive
            rows = await c.export_usage(args.account_id, out, **kwargs)
    except BaseException:
        os.unlink(part)
        raise
    os.replace(part, args.out)  # a failed export leaves no truncated file under the final name
    return {"rows": rows, "file": args.out}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = asyncio.run(run(args))
    except QuotaClientError as exc:
        print(f"quota-cli: {exc.code.name}: {exc.details}", file=sys.stderr)
        return 1
    if args.command == "export" and result["file"] == "-":
        print(f"{result['rows']} rows", file=sys.stderr)
        return 0
    if args.json:
        print(json.dumps(_jsonable(result), indent=2, ensure_ascii=False))
    elif isinstance(result, UsagePage):
        print(_show_usage(result))
    elif isinstance(result, Trend):
        print(_show_trend(result))
    elif isinstance(result, TransactionPage):
        print(_show_transactions(result))
    elif isinstance(result, Statement):
        print(_show_statement(result))
    elif isinstance(result, AccountPage):
        print(_show_accounts(result))
    elif isinstance(result, VerifyReport):
        print(_show_verify(result))
    elif isinstance(result, Decision):
        print(_show_decision(result))
    elif isinstance(result, Balance):
        print(_show_balance(result))
    else:
        print("\n".join(f"{k}: {v}" for k, v in _jsonable(result).items()))
    if isinstance(result, VerifyReport) and not result.ok:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
