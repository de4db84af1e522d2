"""Access control (N6, KB6): API keys with roles, scoped to accounts or organizations.

A key looks like `qk_<key id>_<secret>`. Postgres stores only a SHA-256 hash of the secret (the
secret is 256 random bits, so a slow hash adds nothing). Callers send it as gRPC metadata
`authorization: Bearer <key>`. Rotation: create a new key, move callers, revoke the old one; both
work in between. Verified keys are cached for a few seconds, so a revocation takes effect within
`QUOTA_AUTH_CACHE_S`.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg

from quota_service.errors import QuotaError

if TYPE_CHECKING:
    from quota_service.storage.postgres import PostgresLedger

ROLES = ("enforce", "read", "admin")
# the role each RPC needs; admin may do everything
METHOD_ROLES = {
    "Reserve": "enforce", "Commit": "enforce", "Release": "enforce", "Consume": "enforce",
    "Check": "enforce", "ReserveBatch": "enforce", "ReserveStream": "enforce",
    "GetBalance": "read", "GetSubscription": "read", "ListUsage": "read", "ExportUsage": "read", "GetTrend": "read",
    "ListAccounts": "read", "WatchAlerts": "read",
    # billing (KB6: only admins see it)
    "ListTransactions": "admin", "GetStatement": "admin",
    "TopUp": "admin", "CreateAccount": "admin", "SetAccountStatus": "admin", "Subscribe": "admin",
    "ChangePlan": "admin", "Adjust": "admin", "ChangeOwner": "admin", "ExtendSubscription": "admin",
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


def split_key(key: str) -> tuple[str, str]:
    parts = key.split("_")
    if len(parts) != 3 or parts[0] != "qk" or not parts[1] or not parts[2]:
        raise Unauthenticated("authorization: malformed API key")
    return parts[1], parts[2]


async def create_key(conn: asyncpg.Connection, roles: list[str], *, accounts: list[str] = (),  # type: ignore[assignment]
                     orgs: list[str] = (), label: str = "") -> str:  # type: ignore[assignment]
    """Create a key and return it; this is the only time the secret is seen."""
    bad = set(roles) - set(ROLES)
    if bad or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}")
    if not accounts and not orgs:
        raise ValueError("a key needs a scope: accounts (or '*') and/or orgs")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32).replace("_", "-")
    await conn.execute("INSERT INTO api_keys (key_id, secret_hash, roles, accounts, orgs, label) "
                       "VALUES ($1, $2, $3, $4, $5, $6)", key_id, hash_secret(secret), sorted(set(roles)),
                       list(accounts), list(orgs), label)
    return f"qk_{key_id}_{secret}"


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    status = await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
                                key_id)
    return bool(status.endswith(" 1"))


class KeyStore:
    """Verifies keys against Postgres, with a short cache; resolves account organizations."""

    def __init__(self, ledger: PostgresLedger, cache_s: float) -> None:
        self.ledger = ledger
        self.cache_s = cache_s
        self._keys: dict[str, tuple[float, Principal | None, str]] = {}
        self._orgs: dict[str, tuple[float, str]] = {}

    async def verify(self, key: str) -> Principal:
        key_id, secret = split_key(key)
        now = time.monotonic()
        hit = self._keys.get(key_id)
        if hit is None or hit[0] < now:
            row = await self.ledger.fetchrow("SELECT secret_hash, roles, accounts, orgs FROM api_keys "
                                             "WHERE key_id = $1 AND revoked_at IS NULL", key_id)
            principal = None if row is None else Principal(key_id, frozenset(row["roles"]),
                                                           frozenset(row["accounts"]), frozenset(row["orgs"]))
            hit = (now + self.cache_s, principal, row["secret_hash"] if row else "")
            self._keys[key_id] = hit
        _, principal, stored = hit
        if principal is None or not hmac.compare_digest(stored, hash_secret(secret)):
            raise Unauthenticated("authorization: unknown or revoked API key")
        return principal

    async def org_of(self, account_id: str) -> str:
        now = time.monotonic()
        hit = self._orgs.get(account_id)
        if hit is None or hit[0] < now:
            org = await self.ledger.fetchval("SELECT COALESCE(org_id, '') FROM accounts WHERE account_id = $1",
                                             account_id)
            hit = (now + self.cache_s, org or "")
            self._orgs[account_id] = hit
        return hit[1]

    async def check_account(self, principal: Principal, account_id: str, *, org_id: str = "") -> None:
        """Raise PermissionDenied unless the account (or, for a new account, org_id) is in scope."""
        if "*" in principal.accounts or account_id in principal.accounts:
            return
        if principal.orgs:
            org = org_id or await self.org_of(account_id)
            if org and org in principal.orgs:
                return
        raise PermissionDenied(f"account_id: {account_id!r} is outside this API key's scope")

    def check_org(self, principal: Principal, org_id: str) -> None:
        """Raise PermissionDenied unless the whole organization is in scope (or the key sees every account)."""
        if "*" in principal.accounts or org_id in principal.orgs:
            return
        raise PermissionDenied(f"org_id: {org_id!r} is outside this API key's scope")
