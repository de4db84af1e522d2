"""Access control (N6, KB6): API keys with roles, scoped to accounts or organizations.

A key looks like `qk_<key id>_<secret>`. Postgres stores only a SHA-256 hash of the secret (the
secret is 256 random bits, so a slow hash adds nothing). Callers send it as gRPC metadata
`authorization: Bearer <key>`. Rotation: create a new key, move callers, revoke the old one; both
work in between. Verified keys are cached for a few seconds, so a revocation takes effect within
`QUOTA_AUTH_CACHE_S`.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import asyncpg
from cachetools import TTLCache

from quota_service.api.overload import ResourceExhausted, TokenBucket
from quota_service.domain import validation as v
from quota_service.errors import QuotaError, Unavailable
from quota_service.storage.queries import Q

if TYPE_CHECKING:
    from quota_service.storage.postgres import PostgresLedger

T = TypeVar("T")

# self_service: a customer's own key (QC13): the catalogue's self-service top-ups of its own accounts,
# and nothing else (TopUp checks the kind; create_key refuses a wider scope)
ROLES = ("enforce", "read", "admin", "self_service")
# the role each RPC needs; admin may do everything
METHOD_ROLES = {
    "Reserve": "enforce", "Commit": "enforce", "Release": "enforce", "Consume": "enforce",
    "Check": "enforce", "ReserveBatch": "enforce", "ReserveStream": "enforce",
    "GetBalance": "read", "GetSubscription": "read", "ListUsage": "read", "ExportUsage": "read", "GetTrend": "read",
    "ListAccounts": "read", "WatchAlerts": "read", "ListCatalogue": "read",
    # billing (KB6: only admins see it)
    "ListTransactions": "admin", "GetStatement": "admin",
    "TopUp": "self_service",  # ad-hoc grants and kinds that are not self-service: admin only (admin.top_up)
    "CreateAccount": "admin", "SetAccountStatus": "admin", "Subscribe": "admin",
    "ChangePlan": "admin", "Adjust": "admin", "ChangeOwner": "admin", "ExtendSubscription": "admin",
    "Verify": "admin",
    # webhook endpoints and billing contacts: admin (an organization's endpoints: a key for the organization)
    "CreateWebhookEndpoint": "admin", "ListWebhookEndpoints": "admin", "SetWebhookEndpointEnabled": "admin",
    "RotateWebhookSecret": "admin", "DeleteWebhookEndpoint": "admin", "SetBillingContacts": "admin",
    "ListDeliveries": "admin", "ReplayDeliveries": "admin",
}


class Unauthenticated(QuotaError):
    """No credential, or one that is unknown, malformed or revoked."""


class PermissionDenied(QuotaError):
    """The credential is valid but lacks the role, or the account is outside its scope."""


@dataclass(frozen=True)
class Principal:
    key_id: str
    roles: frozenset[str]
    accounts: frozenset[str]  # "*" = every account
    orgs: frozenset[str]

    def may(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


ANONYMOUS = Principal("anonymous", frozenset(ROLES), frozenset({"*"}), frozenset())
current: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=ANONYMOUS)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# The shape of every key create_key makes (a 12-hex-digit id, a 43-character secret), with room to
# spare; anything else is refused before any lookup, whatever its size.
MAX_KEY_CHARS = 200
VALID_IDS_REFRESH_S = 1.0
_KEY_SHAPE = re.compile(r"qk_([0-9a-f]{8,32})_([A-Za-z0-9-]{16,128})")


def split_key(key: str) -> tuple[str, str]:
    m = _KEY_SHAPE.fullmatch(key) if len(key) <= MAX_KEY_CHARS else None
    if m is None:
        raise Unauthenticated("authorization: malformed API key")
    return m.group(1), m.group(2)


async def create_key(conn: asyncpg.Connection, roles: list[str], *, accounts: list[str] = (),  # type: ignore[assignment]
                     orgs: list[str] = (), label: str = "") -> str:  # type: ignore[assignment]
    """Create a key and return it; this is the only time the secret is seen."""
    bad = set(roles) - set(ROLES)
    if bad or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}")
    if not accounts and not orgs:
        raise ValueError("a key needs a scope: accounts (or '*') and/or orgs")
    if "self_service" in roles and (orgs or "*" in accounts or len(set(accounts)) != 1):
        raise ValueError("a self_service key is a customer's own: scope it to exactly one account (--account)")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32).replace("_", "-")
    await conn.execute(Q["auth_create_key"], key_id, hash_secret(secret), sorted(set(roles)), list(accounts),
                       list(orgs), label)
    return f"qk_{key_id}_{secret}"


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute(Q["auth_revoke_key"], key_id)
    return bool(status.endswith(" 1"))


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every key (revoked ones too), oldest first: id, roles, scope, label, created_at, revoked_at."""
    rows: list[asyncpg.Record] = await conn.fetch(Q["auth_list_keys"])
    return rows


def _cache(max_entries: int, ttl_s: float) -> TTLCache[str, T]:
    return TTLCache(max_entries, ttl_s, timer=time.monotonic)


class KeyStore:
    """Verifies keys against Postgres, with a short cache; resolves account organizations.

    Both caches are bounded in size (`max_entries` each, least recently used out first) and time
    (`cache_s`). A key id that is not among the valid ones this replica knows costs a Postgres query
    only within a budget shared by all callers (`unknown_key_rps` a second). Past it, the ids of the
    valid keys are read again (one query, at most once a second) and a key id still not among them
    is RESOURCE_EXHAUSTED without a query of its own: a flood of made-up keys costs Postgres a few
    queries a second, and a valid key is served (one created during the flood within a second).
    Concurrent look-ups of one key id share one query.
    """

    def __init__(self, ledger: PostgresLedger, cache_s: float, *, max_entries: int = 50_000,
                 unknown_key_rps: float = 50.0) -> None:
        self.ledger = ledger
        self.cache_s = cache_s
        self._keys: TTLCache[str, tuple[Principal | None, str]] = _cache(max_entries, cache_s)
        self._orgs: TTLCache[str, str] = _cache(max_entries, cache_s)
        self._valid: set[str] = set()  # ids of the keys valid when last read (the table's size, not callers')
        self._valid_at = -VALID_IDS_REFRESH_S
        self._valid_lock = asyncio.Lock()
        self._unknown = TokenBucket(unknown_key_rps, max(unknown_key_rps, 1.0)) if unknown_key_rps else None
        self._lookups: dict[str, asyncio.Future[tuple[Principal | None, str]]] = {}  # at most one per key id

    async def verify(self, key: str) -> Principal:
        key_id, secret = split_key(key)
        hit = self._keys.get(key_id)
        if hit is None:
            hit = await self._lookup(key_id)
        principal, stored = hit
        if principal is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise Unauthenticated("authorization: unknown or revoked API key")
        return principal

    async def _lookup(self, key_id: str) -> tuple[Principal | None, str]:
        running = self._lookups.get(key_id)
        if running is not None:
            return await asyncio.shield(running)
        if key_id not in self._valid and self._unknown is not None and not self._unknown.try_take(1):
            await self._read_valid_ids()
            if key_id not in self._valid:
                raise ResourceExhausted("authorization: too many look-ups of unknown API keys; retry later")
        fut: asyncio.Future[tuple[Principal | None, str]] = asyncio.get_running_loop().create_future()
        self._lookups[key_id] = fut
        try:
            row = await self.ledger.fetchrow(Q["auth_active_key"], key_id)
            principal = None if row is None else Principal(key_id, frozenset(row["roles"]),
                                                           frozenset(row["accounts"]), frozenset(row["orgs"]))
            hit = (principal, row["secret_hash"] if row else "")
            self._keys[key_id] = hit
            if principal is not None:
                self._valid.add(key_id)
            fut.set_result(hit)
            return hit
        except BaseException as exc:
            # the waiters on a cancelled look-up are not cancelled themselves: they may retry
            fut.set_exception(exc if isinstance(exc, Exception) else
                              Unavailable("authorization: the API key look-up was interrupted; retry"))
            fut.exception()  # retrieved: a look-up no one else waited on logs nothing
            raise
        finally:
            del self._lookups[key_id]

    async def _read_valid_ids(self) -> None:
        """The ids of every valid key, read again unless they were read in the last second."""
        async with self._valid_lock:
            if time.monotonic() - self._valid_at < VALID_IDS_REFRESH_S:
                return
            self._valid_at = time.monotonic()  # a failed read is not tried again within the second either
            rows = await self.ledger.run(lambda c: c.fetch(Q["auth_active_key_ids"]))
            self._valid = {r["key_id"] for r in rows}

    async def org_of(self, account_id: str) -> str:
        org = self._orgs.get(account_id)
        if org is None:
            org = await self.ledger.fetchval(Q["auth_account_org"], account_id) or ""
            self._orgs[account_id] = org
        return org

    async def check_account(self, principal: Principal, account_id: str, *, org_id: str = "") -> None:
        """Raise PermissionDenied unless the account (or, for a new account, org_id) is in scope."""
        if "*" in principal.accounts or account_id in principal.accounts:
            return
        if principal.orgs:
            # the shape first: a look-up (and a cache entry) only for an id that may exist
            v.ident("account_id", account_id, required=False)
            v.ident("org_id", org_id, required=False)
            org = org_id or (await self.org_of(account_id) if account_id else "")
            if org and org in principal.orgs:
                return
        raise PermissionDenied(f"account_id: {account_id[:v.MAX_ID_LEN]!r} is outside this API key's scope")

    def check_org(self, principal: Principal, org_id: str) -> None:
        """Raise PermissionDenied unless the whole organization is in scope (or the key sees every account)."""
        if "*" in principal.accounts or org_id in principal.orgs:
            return
        raise PermissionDenied(f"org_id: {org_id[:v.MAX_ID_LEN]!r} is outside this API key's scope")
