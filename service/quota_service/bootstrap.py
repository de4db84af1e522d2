"""The first admin API key of a container deployment (QUOTA_BOOTSTRAP_ADMIN_KEY, or its _FILE).

`./run serve` makes its admin key itself and keeps it in the data folder; a container has no such
folder and must not print a secret into its logs. Instead the operator makes a key
(`quota-service keys generate`), hands it to the container as a secret, and each replica registers
it at start when the database has no active admin key yet. Once any admin key exists nothing
happens, so the operator can create their own keys and revoke this one, and a revoked bootstrap key
never comes back on a restart. The key itself is never logged: only its id.
"""

from __future__ import annotations

import logging
import secrets

import asyncpg

from quota_service import auth
from quota_service.errors import SettingsError
from quota_service.storage.postgres import PostgresLedger
from quota_service.storage.queries import Q

log = logging.getLogger(__name__)
VARIABLE = "QUOTA_BOOTSTRAP_ADMIN_KEY"


def generate_key() -> str:
    """A new key of the shape the service accepts (qk_<12 hex digits>_<64 hex digits>), made locally:
    nothing is stored until a replica registers it."""
    return f"qk_{secrets.token_hex(6)}_{secrets.token_hex(32)}"


def split(key: str) -> tuple[str, str]:
    """(key id, secret) of a bootstrap key; SettingsError naming the setting (never the value) when
    the key does not have the shape of an API key."""
    try:
        return auth.split_key(key)
    except auth.Unauthenticated:
        raise SettingsError(f"{VARIABLE}: not an API key of the form qk_<hex id>_<secret> "
                            "(make one with `quota-service keys generate`)") from None


async def register_on(conn: asyncpg.Connection, key: str) -> bool:
    """Register `key` as an admin key of every account if no admin key is active; True when it was.

    One transaction under an advisory lock, so replicas that start together register it once."""
    key_id, secret = split(key)
    async with conn.transaction():
        await conn.execute(Q["bootstrap_lock"])
        added = await conn.fetchval(Q["bootstrap_register_admin_key"], key_id, auth.hash_secret(secret))
    return added is not None


async def register_admin_key(ledger: PostgresLedger, key: str) -> bool:
    """At start: register the bootstrap admin key when one is configured (see the module's docstring)."""
    if not key:
        return False
    added = await ledger.run(lambda conn: register_on(conn, key))
    if added:
        log.info("registered the bootstrap admin API key", extra={"key_id": split(key)[0]})
    return added
