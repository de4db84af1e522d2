"""Account administration: create accounts, top up grants, change status (A1).

Each change is one Postgres transaction, idempotent by key and recorded in the ledger; the
account's Redis state is then rebuilt so the hot path sees it at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from quota_service.app.alerts import resolve_alerts
from quota_service.app.reserve import Rebuilder
from quota_service.app.settlement import collect_debts, release_withheld, settle_negative
from quota_service.catalogue import CatalogueSet
from quota_service.domain import events
from quota_service.domain import validation as v
from quota_service.domain.billing.adjustment import plan_adjustment
from quota_service.domain.billing.top_up import check_top_up, grant_of, plan_top_up
from quota_service.domain.clock import Clock
from quota_service.domain.model import (
    ACTIONS,
    STATUSES,
    AccountInfo,
    GrantSpec,
    GrantState,
    MeterPolicy,
    request_fingerprint,
)
from quota_service.errors import FailedPrecondition, IdempotencyMismatch, InvalidArgument, NotFound
from quota_service.storage import wire
from quota_service.storage.billing import apply, lock_events
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

MAX_BILLING_EMAILS = 10
LANGUAGES = ("en", "id")  # of an account's email notices


def _account_info(row: asyncpg.Record, replayed: bool = False) -> AccountInfo:
    policies = tuple(wire.policies_from_json(row["policies"]).values())
    return AccountInfo(row["account_id"], row["org_id"], row["time_zone"], row["status"], policies, replayed,
                       row["owner_id"], tuple(row["billing_emails"]), row["language"])


def _grant_state(row: asyncpg.Record) -> GrantState:
    return GrantState(row["grant_id"], row["bucket"], row["source"], row["priority"], row["granted"],
                      row["used"], row["held"], row["overdraft_limit"], row["starts_at_ms"],
                      row["expires_at_ms"], row["label"])


class Admin:
    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None = None) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues  # plan rules for the QA3c hook of top_up

    async def create_account(self, account_id: str, idempotency_key: str, *, org_id: str = "",
                             time_zone: str = "UTC", policies: Sequence[MeterPolicy] = ()) -> AccountInfo:
        v.ident("account_id", account_id)
        v.ident("org_id", org_id, required=False)
        v.idempotency_key(idempotency_key)
        tz = v.time_zone(time_zone)
        pol: dict[str, wire.PolicyJSON] = {}
        if len(policies) > v.MAX_POLICIES:
            raise InvalidArgument("policies", f"at most {v.MAX_POLICIES} meter policies per account, got {len(policies)}")
        for i, p in enumerate(policies):
            v.ident(f"policies[{i}].meter", p.meter)
            if len(p.alert_pct_left) > v.MAX_ALERT_THRESHOLDS:
                raise InvalidArgument(f"policies[{i}].alert_pct_left",
                                      f"at most {v.MAX_ALERT_THRESHOLDS} thresholds, got {len(p.alert_pct_left)}")
            if p.meter in pol:
                raise InvalidArgument(f"policies[{i}].meter", f"{p.meter!r} appears twice")
            v.amount(f"policies[{i}].overage_price_minor", p.overage_price_minor, allow_zero=True,
                     limit=v.MAX_PRICE_MINOR)
            if p.overage_price_minor:
                v.currency(f"policies[{i}].overage_currency", p.overage_currency)
            if p.exhausted_action not in ACTIONS:
                raise InvalidArgument(f"policies[{i}].exhausted_action", "is not a known action")
            for t in p.alert_pct_left:
                if not 0 <= t <= 100:
                    raise InvalidArgument(f"policies[{i}].alert_pct_left", "thresholds are percentages 0..100")
            pol[p.meter] = wire.policy_json(p)
        now = self.clock.now_ms()
        request_hash = request_fingerprint("create_account", org_id, tz, pol)

        async def body(conn: asyncpg.Connection) -> str:
            status = await conn.execute(Q["insert_account"], account_id, org_id, tz, pol, now)
            if status.endswith(" 0"):
                raise FailedPrecondition(f"account_id: account {account_id!r} already exists")
            await conn.execute(Q["insert_admin_entry"], account_id, "account", None, None, 0,
                               idempotency_key, now, {"org_id": org_id, "time_zone": tz, "policies": pol})
            return "created"

        _, replayed = await self._admin(account_id, idempotency_key, "create_account", request_hash, now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_account"], account_id))
        return _account_info(row, replayed)

    async def top_up(self, account_id: str, spec: GrantSpec, idempotency_key: str, *,
                     self_service: bool = False) -> tuple[GrantState, bool]:
        """Add a grant of units (meter bucket) or money ("$" + currency bucket): ad hoc, or a top-up kind
        of the account's catalogue (`spec.kind`: a wallet's top-up kind or a pack, whose rules apply).
        `self_service`: the caller may only make the catalogue's self-service kinds (QC13).

        The grant first pays what its bucket owes (grants below zero, `settle` entries); only the rest
        is spendable. One transaction, in the cycler's lock order (subscription, then account)."""
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        now = self.clock.now_ms()
        starts = check_top_up(spec, self_service, now)
        grant_id = spec.grant_id or f"g-{uuid.uuid5(uuid.NAMESPACE_URL, account_id + '/' + idempotency_key).hex}"
        request_hash = request_fingerprint("top_up", spec.bucket, spec.amount, spec.source, spec.priority,
                                      spec.overdraft_limit, spec.starts_at_ms, spec.expires_at_ms,
                                      spec.label, spec.grant_id, spec.kind)

        async def body(conn: asyncpg.Connection) -> str:
            await lock_events(conn)  # balance.topped_up, and the alerts the top-up resolves
            if await conn.fetchrow(Q["get_account"], account_id) is None:
                raise NotFound("account_id", f"unknown account {account_id!r}")
            sub = await conn.fetchrow(Q["lock_subscription"], account_id)
            cat = self.catalogues.get(sub["product"]) if sub is not None and self.catalogues is not None else None
            g = grant_of(spec, sub, cat, self_service)
            total = await conn.fetchval(Q["bucket_total"], account_id, spec.bucket)
            new = plan_top_up(spec, grant_id, g, starts, total, idempotency_key, now)
            if not (await apply(conn, account_id, [new]))[0]:
                raise FailedPrecondition(f"grant.grant_id: grant {grant_id!r} already exists")
            # what the bucket owes is paid first (QC7, QA3c): only the rest of the top-up is spendable
            await collect_debts(conn, account_id, spec.bucket, grant_id, now)
            if sub is not None and sub["withheld"]:
                # QA3c: a reset withheld because of a debt is released once the debt is paid off
                await release_withheld(conn, sub, self.catalogues, grant_id, spec.bucket, now)
            source = "self_service" if self_service else "manual"
            await apply(conn, account_id, [events.topped_up(spec.bucket, new.granted, grant_id, source, now)])
            await resolve_alerts(conn, account_id, now)
            return grant_id

        answer, replayed = await self._admin(account_id, idempotency_key, "top_up", request_hash, now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_grant"], answer, account_id))
        return _grant_state(row), replayed

    async def set_status(self, account_id: str, status: str, idempotency_key: str) -> AccountInfo:
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        if status not in STATUSES:
            raise InvalidArgument("status", f"must be one of {', '.join(STATUSES)}")
        now = self.clock.now_ms()

        async def body(conn: asyncpg.Connection) -> str:
            await lock_events(conn)  # account.status_changed
            before = await conn.fetchrow(Q["get_account"], account_id)
            if before is None or await conn.fetchval(Q["set_status"], account_id, status) is None:
                raise NotFound("account_id", f"unknown account {account_id!r}")
            await apply(conn, account_id, events.status_changed(before["status"], status, now))
            await conn.execute(Q["insert_admin_entry"], account_id, "status", None, None, 0,
                               idempotency_key, now, {"status": status})
            return status

        _, replayed = await self._admin(account_id, idempotency_key, "set_status",
                                        request_fingerprint("set_status", status), now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_account"], account_id))
        return _account_info(row, replayed)

    async def adjust(self, account_id: str, grant_id: str, amount: int, reason: str,
                     idempotency_key: str) -> tuple[GrantState, bool]:
        """A correction after the fact (A1): `amount` more used on the grant (a charge reconciled later),
        or less (a refund, down to nothing used). It may take the grant below its floor: its overdraft
        limit then grows to the debt, so nothing new is charged to it, and shrinks back as the debt is paid
        (a refund, a settlement, the next top-up of the bucket). A negative top-up of a wallet with a
        settlement rule is then paid from the initial balance (QC7)."""
        v.ident("account_id", account_id)
        v.ident("grant_id", grant_id)
        v.idempotency_key(idempotency_key)
        if amount == 0 or abs(amount) > v.MAX_GRANT:
            raise InvalidArgument("amount", f"must be a non-zero correction within ±{v.MAX_GRANT}")
        v.text("reason", reason, max_len=200)
        if not reason.strip():
            raise InvalidArgument("reason", "is required: say why the balance is corrected")
        now = self.clock.now_ms()

        async def body(conn: asyncpg.Connection) -> str:
            await lock_events(conn)  # the alerts a refund resolves
            sub = await conn.fetchrow(Q["lock_subscription"], account_id)  # the cycler's lock order
            row = await conn.fetchrow(Q["lock_grant"], grant_id, account_id)
            if row is None:
                raise NotFound("grant_id", f"no grant {grant_id!r} for account {account_id!r}")
            await apply(conn, account_id, plan_adjustment(row, grant_id, amount, reason, idempotency_key, now))
            if sub is not None:  # QC7: the settlement rule pays at once what it can (its floor follows)
                await settle_negative(conn, sub, self.catalogues, row["bucket"], now)
            await resolve_alerts(conn, account_id, now)
            return grant_id

        _, replayed = await self._admin(account_id, idempotency_key, "adjust",
                                        request_fingerprint("adjust", grant_id, amount, reason), now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_grant"], grant_id, account_id))
        return _grant_state(row), replayed

    async def change_owner(self, account_id: str, owner_id: str, idempotency_key: str) -> AccountInfo:
        """KB5: hand the account to another owner (a user id of the platform); in the ledger."""
        v.ident("account_id", account_id)
        v.ident("owner_id", owner_id)
        v.idempotency_key(idempotency_key)
        now = self.clock.now_ms()

        async def body(conn: asyncpg.Connection) -> str:
            row = await conn.fetchrow(Q["get_account"], account_id)
            if row is None:
                raise NotFound("account_id", f"unknown account {account_id!r}")
            await conn.execute(Q["set_owner"], account_id, owner_id)
            await conn.execute(Q["insert_admin_entry"], account_id, "owner_change", None, None, 0,
                               idempotency_key, now, {"from": row["owner_id"], "to": owner_id})
            return owner_id

        _, replayed = await self._admin(account_id, idempotency_key, "change_owner",
                                        request_fingerprint("change_owner", owner_id), now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_account"], account_id))
        return _account_info(row, replayed)

    async def set_billing_contacts(self, account_id: str, emails: Sequence[str], language: str,
                                   idempotency_key: str) -> AccountInfo:
        """The addresses the account's email notices go to (at most MAX_BILLING_EMAILS; none = no email)
        and their language ("en" or "id"; "" keeps the account's)."""
        v.ident("account_id", account_id)
        v.idempotency_key(idempotency_key)
        if len(emails) > MAX_BILLING_EMAILS:
            raise InvalidArgument("emails", f"at most {MAX_BILLING_EMAILS} addresses, got {len(emails)}")
        seen: set[str] = set()
        for i, address in enumerate(emails):
            v.email(f"emails[{i}]", address)
            if address.lower() in seen:
                raise InvalidArgument(f"emails[{i}]", f"{address!r} appears twice")
            seen.add(address.lower())
        if language not in ("", *LANGUAGES):
            raise InvalidArgument("language", f"must be one of {', '.join(LANGUAGES)} (\"\" keeps the account's)")
        now = self.clock.now_ms()

        async def body(conn: asyncpg.Connection) -> str:
            if await conn.fetchval(Q["set_billing_contacts"], account_id, list(emails), language) is None:
                raise NotFound("account_id", f"unknown account {account_id!r}")
            return account_id

        _, replayed = await self._admin(account_id, idempotency_key, "set_billing_contacts",
                                        request_fingerprint("set_billing_contacts", list(emails), language), now, body)
        row = await self.ledger.run(lambda c: c.fetchrow(Q["get_account"], account_id))
        return _account_info(row, replayed)

    async def _admin(self, account_id: str, key: str, kind: str, request_hash: str, now: int,
                     body: Callable[[asyncpg.Connection], Awaitable[str]]) -> tuple[str, bool]:
        """Run `body` once per idempotency key (the ledger's admin transaction), then rebuild the
        account's Redis state unless the answer was replayed."""
        answer, replayed = await self.ledger.admin(account_id, key, kind, request_hash, now, body)
        if not answer:
            raise IdempotencyMismatch(key)
        if not replayed:
            await self.rebuilder.rebuild(account_id)
        return answer, replayed
