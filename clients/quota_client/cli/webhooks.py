"""`quota-cli webhooks create|list|disable|enable|rotate|delete` and `quota-cli contacts`.

The secret of an endpoint is printed by `create` and `rotate` only, once: the service shows it in no
other answer (a retried command with the same --key prints none).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from rich.console import RenderableType

from quota_client.cli import render
from quota_client.cli.parse import add_globals, duration_ms
from quota_client.client import AsyncQuotaClient
from quota_client.results import WebhookEndpoint, WebhookEndpointPage, WebhookSecret

ACTIONS = ("create", "list", "disable", "enable", "rotate", "delete")


@dataclass(frozen=True)
class WebhookDeleted:
    endpoint_id: str
    deleted: bool
    replayed: bool


def _key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", help="idempotency key (default: generated; give one to retry safely)")


def _owner(p: argparse.ArgumentParser, *, required: bool) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--account", default="", help="an account's endpoint (its events)")
    g.add_argument("--org", default="", help="an organization's endpoint (the events of every account of it)")


def a_webhooks(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create an endpoint; prints its signing secret once")
    c.add_argument("url", help="https:// at a public address")
    _owner(c, required=True)
    c.add_argument("--event", action="append", default=[], help="an event type it gets (repeatable; default every type)")
    c.add_argument("--description", default="")
    _key(c)
    ls = sub.add_parser("list", help="the endpoints of an account, an organization, or every one (no secrets)")
    _owner(ls, required=False)
    ls.add_argument("--page-size", type=int, default=100)
    ls.add_argument("--page-token", default="", help="the token a previous page printed")
    for name, text in (("disable", "stop new deliveries to an endpoint"), ("enable", "deliver to it again"),
                       ("delete", "delete an endpoint and its deliveries")):
        one = sub.add_parser(name, help=text)
        one.add_argument("endpoint_id")
        _key(one)
    r = sub.add_parser("rotate", help="a new signing secret (printed once); the old one signs too for --grace")
    r.add_argument("endpoint_id")
    r.add_argument("--grace", type=duration_ms, default=None,
                   help="how long the old secret keeps signing, e.g. 24h (default), 30m, 0 (stop at once)")
    _key(r)
    for parser in sub.choices.values():
        add_globals(parser, top=False)


async def webhooks(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    if a.action == "create":
        return await c.create_webhook_endpoint(a.url, account_id=a.account, org_id=a.org, event_types=a.event,
                                               description=a.description, idempotency_key=a.key)
    if a.action == "list":
        return await c.webhook_endpoints(account_id=a.account, org_id=a.org, page_size=a.page_size,
                                         page_token=a.page_token)
    if a.action in ("enable", "disable"):
        endpoint, _ = await c.set_webhook_endpoint_enabled(a.endpoint_id, a.action == "enable", idempotency_key=a.key)
        return endpoint
    if a.action == "rotate":
        grace = None if a.grace is None else a.grace // 1000
        return await c.rotate_webhook_secret(a.endpoint_id, grace_seconds=grace, idempotency_key=a.key)
    replayed = await c.delete_webhook_endpoint(a.endpoint_id, idempotency_key=a.key)
    return WebhookDeleted(a.endpoint_id, True, replayed)


def a_contacts(p: argparse.ArgumentParser) -> None:
    p.add_argument("account_id")
    p.add_argument("--email", action="append", default=[],
                   help="a billing contact (repeatable; every contact after the change; none clears them)")
    p.add_argument("--language", default="", choices=["", "en", "id"], help="of the emails (default: unchanged)")
    _key(p)


async def contacts(c: AsyncQuotaClient, a: argparse.Namespace) -> Any:
    return await c.set_billing_contacts(a.account_id, a.email, language=a.language, idempotency_key=a.key)


# -- human output -----------------------------------------------------------------------------------


def _types(e: WebhookEndpoint) -> str:
    return ", ".join(e.event_types) or "every type"


def _state(e: WebhookEndpoint) -> str:
    return "enabled" if e.enabled else f"disabled ({e.disabled_reason or 'manual'})"


def _endpoint_items(e: WebhookEndpoint) -> list[tuple[str, Any]]:
    owner = ("account", e.account_id) if e.account_id else ("organization", e.org_id)
    items: list[tuple[str, Any]] = [("endpoint", e.endpoint_id), owner, ("url", e.url), ("events", _types(e)),
                                    ("state", _state(e)), ("description", e.description or "-"),
                                    ("created", render.iso(e.created_at_ms)), ("updated", render.iso(e.updated_at_ms))]
    if e.previous_secret_until_ms:
        items.append(("old secret signs until", render.iso(e.previous_secret_until_ms)))
    return items


def show(result: Any) -> list[RenderableType] | None:
    """The human rendering of a webhooks result; None for a result of another command."""
    if isinstance(result, WebhookSecret):
        items = _endpoint_items(result.endpoint)
        if result.replayed:
            return [render.record([*items, ("secret", "not shown again (a replay of an earlier call); "
                                                      "rotate it with --grace 0 if it was lost")])]
        return [render.record([*items, ("secret", result.secret)]),
                "Keep the secret now: the service shows it only this once. Receivers verify deliveries with it."]
    if isinstance(result, WebhookEndpoint):
        return [render.record(_endpoint_items(result))]
    if isinstance(result, WebhookEndpointPage):
        rows = [[e.endpoint_id, e.account_id or f"org {e.org_id}", e.url, _types(e), _state(e)]
                for e in result.endpoints]
        out: list[RenderableType] = [render.table(["endpoint", "owner", "url", "events", "state"], rows)]
        return out + render.more(result.next_page_token)
    if isinstance(result, WebhookDeleted):
        return [f"deleted {result.endpoint_id}" + (" (replayed)" if result.replayed else "")]
    return None
