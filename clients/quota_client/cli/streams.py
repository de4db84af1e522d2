"""The streaming commands: `export` (CSV, with a progress bar on stderr) and `alerts` (WatchAlerts)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import tzinfo
from typing import Any, BinaryIO, cast

from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from quota_client.cli import jsonout, render
from quota_client.client import AsyncQuotaClient


class _Counted:
    """A binary file that moves the progress bar by the bytes written through it."""

    def __init__(self, out: BinaryIO, progress: Progress, task: Any) -> None:
        self.out, self.progress, self.task = out, progress, task

    def write(self, data: bytes) -> int:
        written = self.out.write(data)
        self.progress.update(self.task, advance=len(data))
        return written


def _progress() -> Progress:
    """A bar without a total (the export's size is known only at its end): bytes written and time taken.
    Only on a terminal: a log file gets the summary line alone."""
    console = render.console(stderr=True)
    return Progress(SpinnerColumn(), TextColumn("exporting"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


async def export(c: AsyncQuotaClient, args: argparse.Namespace) -> dict[str, Any]:
    """Stream the CSV into --out ('-': standard output). A failed export leaves no truncated file under the
    final name: it is written to NAME.part and renamed when complete."""
    kwargs: dict[str, Any] = dict(from_ms=args.from_ms, to_ms=args.to_ms, meter=args.meter, attributes=dict(args.attr),
                                  attribute_columns=tuple(args.column), raw=args.raw)
    with _progress() as progress:
        task = progress.add_task("export", total=None)
        if args.out == "-":
            rows = await c.export_usage(args.account_id, _Counted(sys.stdout.buffer, progress, task), **kwargs)
            sys.stdout.buffer.flush()
            return {"rows": rows, "file": "-"}
        part = f"{args.out}.part"
        try:
            with open(part, "wb") as out:  # written chunk by chunk as they arrive
                rows = await c.export_usage(args.account_id, _Counted(out, progress, task), **kwargs)
        except BaseException:
            os.unlink(part)
            raise
    os.replace(part, args.out)
    return {"rows": rows, "file": args.out}


async def _events(c: AsyncQuotaClient, args: argparse.Namespace) -> AsyncIterator[Any]:
    """The events asked for: with --follow until --limit (or for ever); without, the stored ones, taken to be
    all sent once the stream has been quiet for --idle seconds (the API sends no 'caught up' marker)."""
    # an async generator: closed below so that the call is cancelled at once, not when collected
    stream = cast(AsyncGenerator[Any, None],
                  c.watch_alerts(account_id=args.account_id or "", org_id=args.org, after_event_id=args.after,
                                 types=args.types))
    seen = 0
    try:
        while not args.limit or seen < args.limit:
            try:
                event = await (anext(stream) if args.follow else asyncio.wait_for(anext(stream), args.idle))
            except (StopAsyncIteration, TimeoutError):
                return
            seen += 1
            yield event
    finally:
        await stream.aclose()


ZoneLookup = Callable[[AsyncQuotaClient, str], Awaitable[tzinfo]]


async def alerts(c: AsyncQuotaClient, args: argparse.Namespace, zone_of: ZoneLookup) -> dict[str, Any]:
    """Print each event as it arrives (a table row, or a JSON line with --json); returns how many."""
    out = render.console()
    zones: dict[str, tzinfo] = {}
    count = 0
    if not args.json:
        out.print("  ".join(render.ALERT_HEADER))
    async for event in _events(c, args):
        count += 1
        if args.json:
            print(jsonout.dumps(event, indent=None), flush=True)
            continue
        if event.account_id not in zones:
            zones[event.account_id] = await zone_of(c, event.account_id)
        out.print("  ".join(render.alert_row(event, zones[event.account_id])), soft_wrap=True)
        out.file.flush()
    return {"events": count}
