"""Human output of `quota-cli`: rich tables, times in ISO 8601 in the account's time zone.

Tables go to a terminal at its width; into a pipe or a file they are as wide as their content (up to
`COLUMNS`, when set), so that a `grep` finds an id whole rather than folded over two lines.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table

from quota_client.results import (
    Account,
    AccountPage,
    Balance,
    Decision,
    Grant,
    Statement,
    Subscription,
    TransactionPage,
    UsagePage,
    VerifyReport,
)

# the columns that fold when a table is wider than the terminal; the others keep their width
FLEXIBLE_COLUMNS = frozenset({"grant", "label", "detail", "title", "per cycle", "remaining/granted", "units", "price",
                              "plans", "reservation"})
FLEXIBLE_MIN_WIDTH = 12
PIPE_WIDTH = 240  # a table written into a pipe or a file: wide enough never to fold an id


def columns_env() -> int | None:
    value = os.environ.get("COLUMNS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    probe = Console(file=stream)
    width = columns_env() or (None if probe.is_terminal else PIPE_WIDTH)
    return Console(file=stream, width=width, highlight=False, emoji=False)


def emit(items: Iterable[RenderableType]) -> None:
    """Print renderables with a blank line between them. Into a pipe or a file the lines lose the padding
    rich gives them to the table's width: trailing blanks only get in the way of a script."""
    out = console()
    with out.capture() as captured:
        for i, item in enumerate(items):
            if i:
                out.print()
            if isinstance(item, str):
                out.print(item, soft_wrap=True)
                continue
            # a table that cannot fit even with its long columns folded is printed whole, wider than the
            # terminal (which wraps its lines), rather than cut
            width = out.width
            out.width = max(width, Measurement.get(out, out.options.update_width(PIPE_WIDTH * 10), item).minimum)
            out.print(item, crop=False)
            out.width = width
    text = captured.get()
    if not out.is_terminal:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    out.file.write(text)
    out.file.flush()


def iso(ms: int, zone: tzinfo = UTC) -> str:
    """Milliseconds since the epoch as ISO 8601 with the zone's offset ("-" for 0: none)."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec="seconds")


def zone_name(zone: tzinfo) -> str:
    return str(getattr(zone, "key", None) or zone)


def table(header: Iterable[str], rows: Iterable[Iterable[Any]], *, title: str | None = None,
          numeric: Iterable[str] = ()) -> Table:
    """A plain table: columns named in `numeric` are right-aligned. On a narrow terminal only the long text
    columns (ids, labels, details) fold; numbers, times, names and states keep their width."""
    right = set(numeric)
    names = list(header)
    cells = [[str(c) for c in row] for row in rows]
    t = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False)
    for i, name in enumerate(names):
        whole = name not in FLEXIBLE_COLUMNS
        width = max([len(name), *(len(r[i]) for r in cells)])
        if not whole:
            width = min(width, FLEXIBLE_MIN_WIDTH)
        t.add_column(name, justify="right" if name in right else "left", overflow="fold", no_wrap=whole,
                     min_width=width)
    for row in cells:
        t.add_row(*row)
    return t


def record(items: Iterable[tuple[str, Any]], *, title: str | None = None) -> Table:
    """One record as `key: value` lines."""
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    if title:
        t.title = title
        t.title_justify = "left"
    for key, value in items:
        t.add_row(f"{key}:", str(value))
    return t


def show_decision(d: Decision, zone: tzinfo) -> list[RenderableType]:
    head = "GRANTED" if d.granted else f"DENIED {d.reason}"
    items: list[tuple[str, Any]] = [("decision", head), ("amount", d.amount), ("remaining", d.remaining),
                                    ("% left", f"{d.remaining_pct:.1f}")]
    if d.reservation_id:
        items += [("reservation", d.reservation_id), ("expires", iso(d.expires_at_ms, zone))]
    if d.action:
        items.append(("action", d.action))
    if d.overage_minor:
        items.append(("overage", f"{d.overage_minor} {d.overage_currency} (minor units)"))
    items += [("alert", f"{a.meter} crossed {a.threshold_pct_left}% left") for a in d.alerts]
    if d.dedup_hit:
        items.append(("dedup", "already counted in this window"))
    if d.replayed:
        items.append(("replayed", "the answer of an earlier call with the same idempotency key"))
    out: list[RenderableType] = [record(items)]
    if d.parts:
        out.append(table(["grant", "bucket", "amount"], [[p.grant_id, p.bucket, p.amount] for p in d.parts],
                         numeric=["amount"]))
    return out


def show_grant(g: Grant, zone: tzinfo) -> list[RenderableType]:
    return [record([("grant", g.grant_id), ("bucket", g.bucket), ("source", g.source), ("label", g.label or "-"),
                    ("priority", g.priority), ("granted", g.granted), ("used", g.used), ("held", g.held),
                    ("remaining", g.remaining), ("overdraft limit", g.overdraft_limit),
                    ("starts", iso(g.starts_at_ms, zone)), ("expires", iso(g.expires_at_ms, zone))])]


def show_account(a: Account) -> list[RenderableType]:
    policies = ", ".join(p.meter for p in a.policies) or "-"
    return [record([("account", a.account_id), ("organization", a.org_id or "-"), ("owner", a.owner_id or "-"),
                    ("status", a.status), ("time zone", a.time_zone), ("meters", policies),
                    ("billing contacts", ", ".join(a.billing_emails) or "-"), ("language", a.language),
                    ("replayed", "yes" if a.replayed else "no")])]


def _packs(packs: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x{qty}" for name, qty in sorted(packs.items())) or "-"


def show_subscription(s: Subscription, zone: tzinfo) -> list[RenderableType]:
    items: list[tuple[str, Any]] = [
        ("account", s.account_id), ("plan", f"{s.product}/{s.plan}"), ("interval", s.interval or "-"),
        ("status", s.status), ("packs", _packs(s.packs)), ("since", iso(s.anchor_at_ms, zone)),
        ("cycle", s.cycle), ("cycle start", iso(s.cycle_start_ms, zone)), ("cycle end", iso(s.cycle_end_ms, zone)),
        ("catalogue", f"version {s.catalogue_version} ({s.catalogue_hash.split(':')[-1][:12]})"),
        ("time zone", zone_name(zone))]
    if s.withheld:
        items.append(("withheld", ", ".join(s.withheld)))
    if s.pending_change:
        c = s.pending_change
        items.append(("pending change", f"{c.plan} {c.interval} {_packs(c.packs)} at {iso(c.effective_at_ms, zone)}"))
    if s.replayed:
        items.append(("replayed", "yes"))
    return [record(items)]


def show_balance(b: Balance, zone: tzinfo) -> list[RenderableType]:
    head = f"account {b.account_id} ({b.status}), time zone {zone_name(zone)}"
    if b.as_of_ms:
        head += f", as of {iso(b.as_of_ms, zone)}"
    if b.cycle_end_ms:
        head += f", cycle {iso(b.cycle_start_ms, zone)} .. {iso(b.cycle_end_ms, zone)}"
    amounts = ["granted", "used", "held", "remaining", "% left", "prio"]
    meters = table(["bucket", "granted", "used", "held", "remaining", "% left"],
                   [[m.bucket, m.granted, m.used, m.held, m.remaining, f"{m.remaining_pct:.1f}"] for m in b.meters.values()],
                   numeric=amounts)
    grants = table(["grant", "bucket", "source", "label", "prio", "granted", "used", "held", "remaining", "expires"],
                   [[g.grant_id, g.bucket, g.source, g.label or "-", g.priority, g.granted, g.used, g.held, g.remaining,
                     iso(g.expires_at_ms, zone)] for g in b.grants], numeric=amounts)
    return [head, meters, grants]


def more(token: str) -> list[RenderableType]:
    """How to ask for the next page."""
    return [f"more: --page-token {token}"] if token else []


def show_usage(page: UsagePage, zone: tzinfo) -> list[RenderableType]:
    rows = [[iso(r.occurred_at_ms, zone), r.meter, r.bucket, r.amount, r.running_used, r.attributes.get("room_id", ""),
             r.attributes.get("channel", ""), r.kind, r.grant_id] for r in page.rows]
    t = table(["time", "meter", "bucket", "amount", "running", "room", "channel", "kind", "grant"], rows,
              numeric=["amount", "running"], title=f"usage, times in {zone_name(zone)}")
    return [t, *more(page.next_page_token)]


def transactions_table(page: TransactionPage | Statement, zone: tzinfo) -> Table:
    rows = [[iso(t.occurred_at_ms, zone), t.kind, t.bucket, f"{t.amount:+d}", t.source, t.label, t.grant_id]
            for t in page.transactions]
    return table(["time", "kind", "bucket", "amount", "source", "label", "grant"], rows, numeric=["amount"],
                 title=f"transactions, times in {zone_name(zone)}")


def show_transactions(page: TransactionPage, zone: tzinfo) -> list[RenderableType]:
    return [transactions_table(page, zone), *more(page.next_page_token)]


def show_statement(st: Statement, zone: tzinfo) -> list[RenderableType]:
    state = "closed" if st.closed else "open"
    head = (f"statement of {st.account_id}: {st.product} {st.plan}, cycle {st.cycle} "
            f"[{iso(st.cycle_start_ms, zone)} .. {iso(st.cycle_end_ms, zone)}) {state}")
    header = ["bucket", "opening", "granted", "used", "forfeited", "closing", "overage units", "overage cost"]
    lines = table(header, [[ln.bucket, ln.opening, ln.granted, ln.used, ln.forfeited, ln.closing, ln.overage_units,
                            f"{ln.overage_minor} {ln.overage_currency}".strip()] for ln in st.lines],
                  numeric=header[1:])
    out: list[RenderableType] = [head, lines]
    if st.transactions:
        out.append(transactions_table(st, zone))
    return out


def show_accounts(page: AccountPage, zones: Mapping[str, tzinfo]) -> list[RenderableType]:
    rows = []
    for a in page.accounts:
        zone = zones.get(a.account_id, UTC)
        meters = ", ".join(f"{m.bucket} {m.remaining}/{m.granted}" for m in a.meters)
        pending = f"{a.pending_change.plan} at cycle end" if a.pending_change else "-"
        rows.append([a.account_id, (a.plan and f"{a.product}/{a.plan}") or "-", a.status.lower(), a.owner_id or "-",
                     iso(a.cycle_end_ms, zone), iso(a.next_expiry_ms, zone), pending, meters])
    t = table(["account", "plan", "status", "owner", "cycle ends", "next expiry", "pending", "remaining/granted"], rows,
              title="accounts, times in each account's time zone")
    return [t, *more(page.next_page_token)]


def show_verify(report: VerifyReport) -> list[RenderableType]:
    n, g, d = report.accounts, report.grants, len(report.differences)
    head = (f"checked {n} account{'s' * (n != 1)}, {g} grant{'s' * (g != 1)}: "
            + ("balances equal the ledger" if report.ok else f"{d} difference{'s' * (d != 1)}"))
    out: list[RenderableType] = [head]
    if report.differences:
        out.append(table(["account", "grant", "store", "field", "expected", "actual", "redis", "detail"],
                         [[x.account_id, x.grant_id or "-", x.store, x.field, x.expected, x.actual,
                           "repaired" if x.repaired else "-", x.detail] for x in report.differences],
                         numeric=["expected", "actual"]))
    if report.in_flight:
        out.append(f"in flight (Redis not compared): {', '.join(report.in_flight)}")
    if report.rebuilt:
        out.append(f"rebuilt (unconfirmed mutations past their deadline): {', '.join(report.rebuilt)}")
    return out


ALERT_HEADER = ["event", "time", "account", "meter", "threshold"]


def alert_row(event: Any, zone: tzinfo) -> list[str]:
    """An event as a row: for an alert the threshold, percent of the meter left (0: ran out); for the
    other types what happened."""
    return [str(event.event_id), iso(event.occurred_at_ms, zone), event.account_id, event.meter or "-",
            event_summary(event)]


def event_summary(event: Any) -> str:
    threshold = "ran out" if event.threshold_pct_left == 0 else f"{event.threshold_pct_left}% left"
    if event.type in ("", "alert.triggered"):
        return threshold
    data = json.loads(event.data_json or "{}")
    match event.type:
        case "alert.resolved":
            return f"resolved: {threshold} (now {data.get('percent_left', 0)}% left)"
        case "balance.topped_up":
            return f"topped up {data.get('amount')} {data.get('currency') or ''} ({data.get('source')})".replace("  ", " ")
        case "cycle.rolled":
            return f"cycle {data.get('cycle')} began"
        case "plan.changed":
            return f"plan {data.get('from_plan')} -> {data.get('to_plan')} ({data.get('when')})"
        case "account.status_changed":
            return f"status {data.get('from_status')} -> {data.get('to_status')}"
    return str(event.type)
