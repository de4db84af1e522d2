"""`quota-cli` itself: parse, call the service, print; errors as one line and an exit code.

Exit codes: 0 done; 1 the service refused (the gRPC code and its message on one line) or `verify`
found a difference; 2 a bad command line; 130 interrupted; 141 the reader of standard output went
away (`quota-cli export ... | head -1`), which is not worth a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import RenderableType

from quota_client.cli import catalogue, chart, deliveries, jsonout, render, streams, webhooks
from quota_client.cli.commands import COMMANDS
from quota_client.cli.parse import UsageError, build, check_command
from quota_client.client import AsyncQuotaClient, QuotaClientError
from quota_client.results import (
    Account,
    AccountPage,
    Balance,
    Decision,
    Grant,
    Statement,
    Subscription,
    TransactionPage,
    Trend,
    UsagePage,
    VerifyReport,
)

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer killed by a closed pipe


def parser() -> argparse.ArgumentParser:
    return build([(name, text, add) for name, text, add, _ in COMMANDS])


async def zone_of(c: AsyncQuotaClient, account_id: str, balance: Balance | None = None) -> tzinfo:
    """The account's time zone, for human output: the balance names it (asked for when not given);
    UTC when the key may not read the balance or the service could not say."""
    try:
        if balance is None:
            balance = await c.balance(account_id)
        return ZoneInfo(balance.time_zone or "UTC")
    except (QuotaClientError, ZoneInfoNotFoundError, ValueError):
        return UTC


async def _zones(c: AsyncQuotaClient, account_ids: Sequence[str]) -> dict[str, tzinfo]:
    found = await asyncio.gather(*(zone_of(c, a) for a in account_ids))
    return dict(zip(account_ids, found, strict=True))


async def run(args: argparse.Namespace) -> tuple[Any, list[RenderableType]]:
    """The command's result (for --json) and its human rendering (empty with --json)."""
    handler = next(h for name, _, _, h in COMMANDS if name == args.command)
    async with AsyncQuotaClient(args.target, api_key=args.api_key, timeout_s=args.timeout) as c:
        if args.command == "alerts":
            if not (args.account_id or args.org):
                raise UsageError("alerts: name an account or --org")
            return await streams.alerts(c, args, zone_of), []
        assert handler is not None
        result = await handler(c, args)
        if args.json or args.command == "export":  # export: the CSV went out as it came; a summary follows
            return result, []
        return result, await _human(c, args, result)


async def _human(c: AsyncQuotaClient, args: argparse.Namespace, result: Any) -> list[RenderableType]:
    hooks = webhooks.show(result)
    if hooks is not None:
        return hooks
    sent = deliveries.show(result)
    if sent is not None:
        return sent
    if isinstance(result, Account):
        return render.show_account(result)
    if isinstance(result, AccountPage):
        return render.show_accounts(result, await _zones(c, [a.account_id for a in result.accounts]))
    if isinstance(result, VerifyReport):
        return render.show_verify(result)
    if isinstance(result, Trend):
        width = render.columns_env() or (render.console().width if render.console().is_terminal else 80)
        return ["\n".join(chart.chart_lines(result, width))]
    if args.command == "catalogue":
        return catalogue.show(result, detail=bool(args.product))
    zone = await zone_of(c, args.account_id, result if isinstance(result, Balance) else None)
    shows: list[tuple[type, Any]] = [
        (Decision, render.show_decision), (Grant, render.show_grant), (Subscription, render.show_subscription),
        (Balance, render.show_balance), (UsagePage, render.show_usage), (TransactionPage, render.show_transactions),
        (Statement, render.show_statement)]
    return next(show(result, zone) for kind, show in shows if isinstance(result, kind))


def _written(result: dict[str, Any]) -> str:
    rows = result["rows"]
    return f"{rows} row{'s' * (rows != 1)} written to {result['file']}"


def _print(args: argparse.Namespace, result: Any, shown: list[RenderableType]) -> None:
    if args.command == "alerts":
        return  # printed as the events came
    if args.command == "export":
        if args.out == "-" or not args.json:  # the CSV has standard output, or a person reads the summary
            render.console(stderr=args.out == "-").print(_written(result))
            return
    if args.json:
        print(jsonout.dumps(result))
        return
    render.emit(shown)


def _local(args: argparse.Namespace) -> int:
    """The commands that need no connection to the service."""
    from quota_service.__main__ import keys_command
    from quota_service.errors import SettingsError
    from quota_service.settings import Settings

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    code: int = keys_command(settings, args.words)
    return code


def _broken_pipe() -> int:
    """Standard output's reader has gone: point stdout at /dev/null so that the interpreter's final flush
    does not fail again, and leave quietly."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    try:
        check_command(words, [name for name, *_ in COMMANDS])
        args = parser().parse_args(words)
        if args.command == "keys":
            return _local(args)
        result, shown = asyncio.run(run(args))
        _print(args, result, shown)
    except UsageError as exc:
        print(f"quota-cli: {exc}", file=sys.stderr)
        return 2
    except QuotaClientError as exc:
        print(f"quota-cli: {exc.code.name}: {' '.join(exc.details.split())}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return _broken_pipe()
    except KeyboardInterrupt:
        return 130
    if isinstance(result, VerifyReport) and not result.ok:
        return 1
    return 0
