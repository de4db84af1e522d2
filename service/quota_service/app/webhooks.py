"""Webhook endpoints (issue 12): create, list, enable and disable, rotate the signing secret, delete.

An endpoint belongs to an account (its events) or to an organization (the events of every account
of it). Its URL is checked against SSRF when it is made (delivery/ssrf.py); the dispatcher checks
the address again when it connects.

The signing secret ('whsec_' + base64 of 24 random bytes, as Standard Webhooks libraries read it)
is returned by the call that makes it (create, rotate) and by nothing else: it is not listed, not
logged, and not stored in the idempotency record, so a replay of that call (same idempotency key)
answers with the endpoint and an empty secret. A caller that lost the first answer rotates the
secret (grace 0) to get a new one. After a rotation the previous secret keeps signing beside the new
one for a grace period (`signing_secrets`), so receivers can switch without refusing a delivery.

Each change runs once per idempotency key, in one transaction with its record in `operations`
(scoped by the endpoint's owner for a creation, by the endpoint for a change of it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from quota_service.delivery import ssrf
from quota_service.domain import events
from quota_service.domain import validation as v
from quota_service.domain.clock import Clock
from quota_service.domain.model import idempotency_mismatch, request_fingerprint, same_request
from quota_service.errors import FailedPrecondition, InvalidArgument, NotFound, QuotaError, Unavailable
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
DEFAULT_GRACE_S = 86_400
MAX_GRACE_S = 7 * 86_400
MAX_ENDPOINTS_PER_OWNER = 20
MAX_DESCRIPTION = 200
MAX_PAGE = 1000
RESOLVE_TIMEOUT_S = 5.0

# authorize(account_id, org_id): raises unless the caller may manage the endpoints of that owner
Authorize = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint as the API shows it: never its secrets. Times in ms since the epoch."""

    endpoint_id: str
    account_id: str  # exactly one of account_id and org_id
    org_id: str
    url: str
    event_types: tuple[str, ...]  # empty = every type
    description: str
    enabled: bool
    disabled_reason: str  # "" while enabled; "manual" (an admin), or the dispatcher's reason (410, retries ran out)
    created_at_ms: int
    updated_at_ms: int
    previous_secret_until_ms: int  # the old secret signs too until then; 0 = it does not


@dataclass(frozen=True)
class EndpointSecret:
    """The answer of a creation or a rotation: the secret is "" in a replay."""

    endpoint: WebhookEndpoint
    secret: str
    replayed: bool


@dataclass(frozen=True)
class EndpointChange:
    endpoint: WebhookEndpoint
    replayed: bool


@dataclass(frozen=True)
class EndpointPage:
    endpoints: tuple[WebhookEndpoint, ...]
    next_page_token: str  # "" on the last page


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_endpoint_id() -> str:
    return "we_" + secrets.token_hex(12)


def signing_secrets(endpoint_row: Mapping[str, Any], now: dt.datetime | int) -> list[str]:
    """The secrets that sign a delivery to the endpoint at `now` (a datetime, or ms since the epoch):
    its current secret, then its previous one while the grace period of the last rotation lasts.
    `endpoint_row` has the columns secret, previous_secret and previous_secret_until (a datetime), as
    the query webhook_signing_secrets reads them. Each secret makes one signature in webhook-signature."""
    out = [str(endpoint_row["secret"])]
    previous, until = endpoint_row["previous_secret"], endpoint_row["previous_secret_until"]
    if isinstance(now, int):
        now = dt.datetime.fromtimestamp(now / 1000, tz=dt.UTC)
    if previous and until is not None and now < until:
        out.append(str(previous))
    return out


def _endpoint(row: Mapping[str, Any], now_ms: int) -> WebhookEndpoint:
    until = int(row["previous_secret_until_ms"])
    return WebhookEndpoint(row["endpoint_id"], row["account_id"], row["org_id"], row["url"],
                           tuple(row["event_types"]), row["description"], row["enabled"], row["disabled_reason"],
                           int(row["created_at_ms"]), int(row["updated_at_ms"]), until if until > now_ms else 0)


def _owner_scope(account_id: str, org_id: str) -> str:
    """The idempotency scope of an owner's creations ('/' is in no id: no account's own keys clash)."""
    return f"webhook/account/{account_id}" if account_id else f"webhook/org/{org_id}"


def _endpoint_scope(endpoint_id: str) -> str:
    return f"webhook/endpoint/{endpoint_id}"


Body = Callable[[asyncpg.Connection], Awaitable[str | QuotaError]]


async def run_once(ledger: PostgresLedger, scope: str, key: str, kind: str, request_hash: str, now_ms: int,
                   body: Body) -> tuple[str, bool]:
    """Run `body` once per (scope, idempotency key), in one transaction with the key's record.

    `body` returns the answer to keep (text; never a secret) or a QuotaError to refuse the request,
    which then leaves nothing behind. Returns (answer, replayed); a key used before by another request
    raises IdempotencyMismatch naming what differs."""

    async def run(conn: asyncpg.Connection) -> tuple[str | QuotaError, bool]:
        tx = conn.transaction()
        await tx.start()
        try:
            # take the key first: a concurrent duplicate waits here, then sees it taken
            status = await conn.execute(Q["insert_operation"], scope, key, kind, request_hash, "", now_ms)
            if status.endswith(" 0"):
                prev = await conn.fetchrow(Q["operation"], scope, key)
                await tx.rollback()
                if prev["kind"] != kind or not same_request(prev["request_hash"], request_hash):
                    return idempotency_mismatch(key, request_hash, prev["request_hash"],
                                                prev["kind"] if prev["kind"] != kind else ""), False
                return str(prev["response"]), True
            answer = await body(conn)
            if isinstance(answer, QuotaError):
                await tx.rollback()
                return answer, False
            await conn.execute(Q["store_operation_answer"], scope, key, answer)
            await tx.commit()
            return answer, False
        except Exception:
            # a Postgres error leaves the connection to the pool: end the transaction first (a deadlock
            # is retried on it); any other failure costs the connection, and the rollback is a courtesy
            if not conn.is_closed() and conn.is_in_transaction():
                with contextlib.suppress(Exception):
                    await tx.rollback()
            raise

    answer, replayed = await ledger.run(run)
    if isinstance(answer, QuotaError):  # raised out here: an error inside would cost the pool its connection
        raise answer
    return answer, replayed


def _event_types(types: Sequence[str]) -> list[str]:
    if len(types) > len(events.TYPES):
        raise InvalidArgument("event_types", f"at most {len(events.TYPES)} types")
    if len(set(types)) != len(types):
        raise InvalidArgument("event_types", "a type appears twice")
    try:
        return sorted(events.check_types(types))
    except ValueError as exc:
        raise InvalidArgument("event_types", str(exc)) from None


def _owner(account_id: str, org_id: str) -> None:
    v.ident("account_id", account_id, required=False)
    v.ident("org_id", org_id, required=False)
    if bool(account_id) == bool(org_id):
        raise InvalidArgument("account_id", "give exactly one of account_id (an account's endpoint) and org_id "
                                            "(an organization's)")


class Webhooks:
    """The webhook endpoint use cases. `allow_private`: QUOTA_WEBHOOK_ALLOW_PRIVATE (delivery/ssrf.py)."""

    def __init__(self, ledger: PostgresLedger, clock: Clock, *, allow_private: bool = False) -> None:
        self.ledger = ledger
        self.clock = clock
        self.allow_private = allow_private

    async def check_url(self, url: str) -> None:
        """InvalidArgument naming `url` and the reason unless it is a webhook destination (resolves the host)."""
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                await asyncio.to_thread(ssrf.check_url, url, allow_private=self.allow_private)
        except ValueError as exc:
            raise InvalidArgument("url", str(exc)) from None
        except TimeoutError:
            raise Unavailable(f"url: resolving its host took longer than {RESOLVE_TIMEOUT_S:g} s; retry") from None

    async def create(self, account_id: str, org_id: str, url: str, event_types: Sequence[str], description: str,
                     idempotency_key: str) -> EndpointSecret:
        """A new enabled endpoint of an account or an organization, and its secret (shown in this answer
        only). The caller has checked that it may manage the owner's endpoints."""
        _owner(account_id, org_id)
        types = _event_types(event_types)
        v.text("description", description, max_len=MAX_DESCRIPTION)
        v.idempotency_key(idempotency_key)
        await self.check_url(url)
        now = self.clock.now_ms()
        made: list[str] = []  # the secret of this call's creation (none in a replay)

        async def body(conn: asyncpg.Connection) -> str | QuotaError:
            await conn.execute(Q["webhook_owner_lock"], _owner_scope(account_id, org_id))
            if account_id and await conn.fetchrow(Q["get_account"], account_id) is None:
                return NotFound("account_id", f"unknown account {account_id!r}")
            if await conn.fetchval(Q["webhook_owner_count"], account_id, org_id) >= MAX_ENDPOINTS_PER_OWNER:
                return FailedPrecondition(f"{'account_id' if account_id else 'org_id'}: at most "
                                          f"{MAX_ENDPOINTS_PER_OWNER} webhook endpoints each; delete one first")
            endpoint_id, secret = new_endpoint_id(), new_secret()
            try:
                await conn.execute(Q["webhook_insert"], endpoint_id, account_id, org_id, url, types, description,
                                   secret, now)
            except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
                # the driver's message may quote the row, secret included: it goes no further
                raise Unavailable(f"storing the endpoint failed ({type(exc).__name__})") from None
            made[:] = [secret]
            return endpoint_id

        request_hash = request_fingerprint("create_webhook_endpoint", account_id, org_id, url, types, description)
        endpoint_id, replayed = await run_once(self.ledger, _owner_scope(account_id, org_id), idempotency_key,
                                               "create_webhook_endpoint", request_hash, now, body)
        return EndpointSecret(await self.get(endpoint_id), "" if replayed else made[0], replayed)

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        row = await self.ledger.fetchrow(Q["webhook_get"], endpoint_id)
        if row is None:
            raise NotFound("endpoint_id", f"no webhook endpoint {endpoint_id!r}")
        return _endpoint(row, self.clock.now_ms())

    async def list_endpoints(self, account_id: str, org_id: str, page_size: int, page_token: str) -> EndpointPage:
        """A page of endpoints by endpoint_id: an account's, an organization's, or every one (both "")."""
        v.ident("account_id", account_id, required=False)
        v.ident("org_id", org_id, required=False)
        if account_id and org_id:
            raise InvalidArgument("org_id", "give account_id or org_id, not both")
        if not 0 <= page_size <= MAX_PAGE:
            raise InvalidArgument("page_size", f"must be 1..{MAX_PAGE} (0 = 100)")
        v.ident("page_token", page_token, required=False)
        size = page_size or 100
        rows = await self.ledger.run(lambda c: c.fetch(Q["webhook_list"], account_id, org_id, page_token, size + 1))
        now = self.clock.now_ms()
        page = tuple(_endpoint(r, now) for r in rows[:size])
        return EndpointPage(page, page[-1].endpoint_id if len(rows) > size else "")

    async def set_enabled(self, endpoint_id: str, enabled: bool, idempotency_key: str,
                          authorize: Authorize) -> EndpointChange:
        """Enable (clearing why it was disabled) or disable an endpoint; a disabled one gets no new deliveries."""
        kind = "enable_webhook_endpoint" if enabled else "disable_webhook_endpoint"

        async def body(conn: asyncpg.Connection, now: int) -> str:
            await conn.execute(Q["webhook_set_enabled"], endpoint_id, enabled, now)
            return endpoint_id

        _, replayed = await self._change(endpoint_id, idempotency_key, kind, request_fingerprint(kind, enabled),
                                         authorize, body)
        return EndpointChange(await self.get(endpoint_id), replayed)

    async def rotate(self, endpoint_id: str, grace_s: int | None, idempotency_key: str,
                     authorize: Authorize) -> EndpointSecret:
        """A new secret (in this answer only); the old one keeps signing for `grace_s` seconds (None: 24 h;
        0: not at all). A rotation within the grace of the last one ends that one's old secret at once."""
        grace = DEFAULT_GRACE_S if grace_s is None else grace_s
        if not 0 <= grace <= MAX_GRACE_S:
            raise InvalidArgument("grace_seconds", f"must be 0..{MAX_GRACE_S} (7 days)")
        made: list[str] = []

        async def body(conn: asyncpg.Connection, now: int) -> str:
            secret = new_secret()
            await conn.execute(Q["webhook_rotate"], endpoint_id, secret, now + grace * 1000 if grace else None, now)
            made[:] = [secret]
            return endpoint_id

        _, replayed = await self._change(endpoint_id, idempotency_key, "rotate_webhook_secret",
                                         request_fingerprint("rotate_webhook_secret", grace), authorize, body)
        return EndpointSecret(await self.get(endpoint_id), "" if replayed else made[0], replayed)

    async def delete(self, endpoint_id: str, idempotency_key: str, authorize: Authorize) -> bool:
        """Delete an endpoint (its deliveries go with it); whether the answer was replayed."""

        async def body(conn: asyncpg.Connection, now: int) -> str:
            await conn.execute(Q["webhook_delete"], endpoint_id)
            return endpoint_id

        _, replayed = await self._change(endpoint_id, idempotency_key, "delete_webhook_endpoint",
                                         request_fingerprint("delete_webhook_endpoint"), authorize, body)
        return replayed

    async def _change(self, endpoint_id: str, key: str, kind: str, request_hash: str, authorize: Authorize,
                      body: Callable[[asyncpg.Connection, int], Awaitable[str]]) -> tuple[str, bool]:
        """Run a change of an existing endpoint once per key, after `authorize` of its owner. The kept
        answer names the owner, so that a replay is authorized even once the endpoint is deleted."""
        v.ident("endpoint_id", endpoint_id)
        v.idempotency_key(key)
        row = await self.ledger.fetchrow(Q["webhook_get"], endpoint_id)
        if row is None:
            return await self._replay_of_gone(endpoint_id, key, kind, request_hash, authorize)
        await authorize(row["account_id"], row["org_id"])
        now = self.clock.now_ms()
        answer = json.dumps({"endpoint_id": endpoint_id, "account_id": row["account_id"], "org_id": row["org_id"]})

        async def locked(conn: asyncpg.Connection) -> str | QuotaError:
            if await conn.fetchrow(Q["webhook_lock"], endpoint_id) is None:  # deleted meanwhile
                return NotFound("endpoint_id", f"no webhook endpoint {endpoint_id!r}")
            await body(conn, now)
            return answer

        return await run_once(self.ledger, _endpoint_scope(endpoint_id), key, kind, request_hash, now, locked)

    async def _replay_of_gone(self, endpoint_id: str, key: str, kind: str, request_hash: str,
                              authorize: Authorize) -> tuple[str, bool]:
        """A request about an endpoint that no longer exists: the replay of the deletion that removed it
        (authorized against the owner its record names), else NOT_FOUND."""
        prev = await self.ledger.fetchrow(Q["operation"], _endpoint_scope(endpoint_id), key)
        if prev is None or kind != "delete_webhook_endpoint" or prev["kind"] != kind:
            raise NotFound("endpoint_id", f"no webhook endpoint {endpoint_id!r}")
        if not same_request(prev["request_hash"], request_hash):
            raise idempotency_mismatch(key, request_hash, prev["request_hash"])
        owner = json.loads(prev["response"])
        await authorize(owner["account_id"], owner["org_id"])
        return str(prev["response"]), True
