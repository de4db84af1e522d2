"""`quota-cli deliveries list|replay`: the deliveries of an endpoint or an account, and sending again."""

from __future__ import annotations

import argparse
from typing import Any

from quota.v1 import quota_pb2 as pb
from rich.console import RenderableType

from quota_client.cli import render
from quota_client.cli.parse import add_globals
from quota_client.client import AsyncQuotaClient


def a_deliveries(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="deliveries of an endpoint or an account, with their attempts")
    g = ls.add_mutually_exclusive_group(required=True)
    g.add_argument("--endpoint", default="", help="an endpoint's deliveries")
    g.add_argument("--account", default="", help="an account's deliveries (webhook and email)")
    ls.add_argument("--page-size", type=int, default=100)
    ls.add_argument("--page-token", default="", help="the token a previous page printed")
    r = sub.add_parser("replay", help="send one delivery again, or every event of an endpoint since an event")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--delivery", type=int, default=0, help="one delivery, by its id")
    g.add_argument("--endpoint", default="", help="an endpoint (with --since)")
    r.add_argument("--since", default="", help="the first event id to send again (with --endpoint)")
    r.add_argument("--key", help="idempotency key (default: generated; give one to retry safely)")
    for parser in sub.choices.values():
        add_globals(parser, top=False)


async def deliveries(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    if a.action == "list":
        return await c.deliveries(endpoint_id=a.endpoint, account_id=a.account, page_size=a.page_size,
                                  page_token=a.page_token)
    return await c.replay_deliveries(delivery_id=a.delivery, endpoint_id=a.endpoint, since_event_id=a.since,
                                     idempotency_key=a.key)


def _last(d: Any) -> str:
    if not d.attempts:
        return "-"
    t = d.attempts[-1]
    return f"{t.status_code or 'no answer'} in {t.latency_ms} ms" + (f": {t.error}" if t.error else "")


def show(result: Any) -> list[RenderableType] | None:
    """The human rendering of a deliveries result; None for a result of another command."""
    if isinstance(result, pb.ListDeliveriesResponse):
        rows = [[d.delivery_id, d.event_id, d.event_type, d.endpoint_id or d.recipient, d.status, d.attempt_count,
                 _last(d), render.iso(d.delivered_at_ms) if d.delivered_at_ms else "-"] for d in result.deliveries]
        out: list[RenderableType] = [render.table(
            ["delivery", "event", "type", "target", "status", "attempts", "last attempt", "delivered"], rows)]
        return out + render.more(result.next_page_token)
    if isinstance(result, pb.ReplayDeliveriesResponse):
        return [f"{result.deliveries} deliveries pending again" + (" (replayed)" if result.replayed else "")]
    return None
