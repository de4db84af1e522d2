"""Postgres adapter: migrations, the batch apply, account snapshots and administration.

Postgres is the source of truth. Mutations decided in Redis are applied here by quota_apply()
(sql/functions/quota_apply.sql), which re-checks every floor, the account's epoch and idempotency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import asyncpg

from quota_service import telemetry
from quota_service.domain.model import idempotency_mismatch, same_request
from quota_service.errors import StorageError
from quota_service.storage.queries import Q

T = TypeVar("T")
MIGRATION_LOCK = 7_412_001  # advisory lock id held while migrating


_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_UNREACHABLE = (OSError, asyncio.TimeoutError, asyncpg.InterfaceError,
                asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                asyncpg.AdminShutdownError, asyncpg.CrashShutdownError, asyncpg.TooManyConnectionsError)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    folder = resources.files("quota_service.storage") / "sql" / "migrations"
    out = []
    for f in folder.iterdir():
        m = re.fullmatch(r"(\d+)_(\w+)\.sql", f.name)
        if m:
            out.append((int(m.group(1)), m.group(2), f.read_text()))
    return sorted(out)


def functions() -> list[tuple[str, str]]:
    """(name, sql) of every PL/pgSQL function of ``sql/functions/`` (one ``<name>.sql`` each, a
    ``CREATE OR REPLACE FUNCTION <name>``), by name. The migrations that first made a function keep
    their text (history); this folder holds the definition in force, applied after them."""
    folder = resources.files("quota_service.storage") / "sql" / "functions"
    out = []
    for f in folder.iterdir():
        m = re.fullmatch(r"(\w+)\.sql", f.name)
        if m:
            out.append((m.group(1), f.read_text()))
    return sorted(out)


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations not yet applied, then the current definition of every function; safe
    when several replicas start at once (one at a time, under an advisory lock).

    A replica whose migration chain is behind the database's (an old one during a rolling upgrade)
    leaves the functions as they are: its definitions may be older than the ones in force."""
    applied: list[int] = []
    await conn.execute(Q["migration_lock"], MIGRATION_LOCK)
    try:
        await conn.execute(Q["create_schema_migrations"])
        done = {r["version"] for r in await conn.fetch(Q["applied_migrations"])}
        chain = migrations()
        for version, name, sql in chain:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(Q["record_migration"], version, name)
            applied.append(version)
        if max(done, default=0) <= max((v for v, _, _ in chain), default=0):
            await apply_functions(conn)
    finally:
        await conn.execute(Q["migration_unlock"], MIGRATION_LOCK)
    return applied


async def apply_functions(conn: asyncpg.Connection) -> None:
    """(Re)define every function of ``sql/functions/`` in one transaction: a repeatable step, run at
    every start, that a database already up to date passes through unchanged.

    CREATE OR REPLACE refuses another result type but takes other argument types for a new function
    beside the old one, which callers would then reach or miss by their argument types: such an
    overload is refused here (the transaction rolls back), so a signature changes only through a
    migration that drops the old function."""
    defined = functions()
    async with conn.transaction():
        for _, sql in defined:
            await conn.execute(sql)
        twice = await conn.fetch(Q["function_overloads"], [name for name, _ in defined])
        if twice:
            raise RuntimeError("sql/functions/ would leave functions defined twice (drop the old signature in a "
                               "migration): " + "; ".join(r["signatures"] for r in twice))


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # The default reset runs a query on every release; this service keeps no session state, so only
    # an interrupted transaction needs undoing.
    if conn.is_in_transaction():
        await conn.execute(Q["rollback"])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


@dataclass(frozen=True)
class ApplyResult:
    """Outcome of one entry: ok, dup (key used before), stale, floor, closed (hold not open)."""

    status: str
    request_hash: str | None = None
    response: str | None = None


class PostgresLedger:
    def __init__(self, pool: asyncpg.Pool, *, timeout_s: float) -> None:
        self.pool = pool
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, dsn: str, *, pool_size: int, timeout_s: float) -> PostgresLedger:
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, init=_init_connection,
                                             reset=_reset_connection,
                                             command_timeout=timeout_s, timeout=timeout_s)
        except _UNREACHABLE as exc:
            raise StorageError(f"postgres: {exc}") from exc
        assert pool is not None
        return cls(pool, timeout_s=timeout_s)

    async def transaction(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` inside one transaction on a pooled connection (retried whole on a deadlock or a
        serialization failure, like ``run``)."""
        async def body(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await fn(conn)
        return await self.run(body)

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection; retried on a deadlock or a serialization failure, an
        unreachable server raised as StorageError (UNAVAILABLE to the caller)."""
        for attempt in range(5):
            try:
                return await self._on_connection(fn)
            except _RETRYABLE:
                if attempt == 4:
                    raise
                await asyncio.sleep(0.005 * (attempt + 1))
            except _UNREACHABLE as exc:
                raise StorageError(f"postgres: {exc!r}") from exc
        raise AssertionError("unreachable")

    async def _on_connection(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run `fn` on a pooled connection. A connection whose call ended in anything but an answer
        from the server (a timeout, a cancelled caller, a broken socket) is closed, not returned: its
        protocol state is unknown, and asyncpg would first wait (up to the command timeout) for a
        cancel request that a partitioned server never answers."""
        conn = await self.pool.acquire(timeout=self.timeout_s)
        try:
            result = await fn(conn)
        except asyncpg.PostgresError:
            await self.pool.release(conn, timeout=self.timeout_s)
            raise
        except BaseException:
            # the original error is what matters; a connection already lost may refuse both steps
            with contextlib.suppress(Exception):
                conn.terminate()
            with contextlib.suppress(Exception):
                await self.pool.release(conn)
            raise
        await self.pool.release(conn, timeout=self.timeout_s)
        return result

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self.run(lambda c: c.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self.run(lambda c: c.fetchval(query, *args))

    async def migrate(self) -> list[int]:
        return await self.run(migrate)

    async def apply(self, entries: list[dict[str, Any]]) -> list[ApplyResult]:
        """Apply a batch of mutations in one transaction; one result per entry, in order.

        Raises StorageError when the outcome is unknown (connection lost around COMMIT).
        """
        with telemetry.client_span("postgresql", "quota_apply"):
            rows = await self.run(lambda c: c.fetch(Q["apply_batch"], entries))
        out = [ApplyResult("")] * len(entries)
        for r in rows:
            out[r["idx"]] = ApplyResult(r["status"], r["request_hash"], r["response"])
        return out

    async def snapshot(self, account_id: str, now_ms: int) -> tuple[int, dict[str, Any]] | None:
        """Start a new epoch for the account and read its state (None: no such account).

        Taking the account row lock fences every mutation made under the old epoch.
        """

        async def run(conn: asyncpg.Connection) -> tuple[int, dict[str, Any]] | None:
            async with conn.transaction():
                acct = await conn.fetchrow(Q["bump_epoch"], account_id)
                if acct is None:
                    return None
                await conn.fetchval(Q["expire_account_holds"], account_id, now_ms)
                grants = await conn.fetch(Q["snapshot_grants"], account_id, now_ms)
                buckets = await conn.fetch(Q["snapshot_buckets"], account_id)
                holds = await conn.fetch(Q["snapshot_holds"], account_id)
                marks = await conn.fetch(Q["snapshot_dedup"], account_id, now_ms)
                cycle_end = await conn.fetchval(Q["snapshot_cycle_end"], account_id)
            snap = {
                "st": acct["status"],
                "pol": acct["policies"] or {},
                "k": sorted({r["bucket"] for r in buckets} | set(acct["policies"] or {})),
                "g": {r["grant_id"]: {"b": r["bucket"], "p": r["priority"], "s": r["starts_at_ms"],
                                      "e": r["expires_at_ms"], "o": r["ord"], "gr": r["granted"],
                                      "u": r["used"], "h": r["held"], "od": r["overdraft_limit"],
                                      "src": r["source"], "lb": r["label"]} for r in grants},
                "h": {r["hold_id"]: {"m": r["meter"], "amt": r["amount"], "rows": r["rows"],
                                     "ou": r["overage_units"], "pr": r["price_minor"],
                                     "exp": r["expires_at_ms"], "dk": r["dedup_key"],
                                     "dde": r["window_end_ms"]} for r in holds},
                "d": [[r["meter"], r["dedup_key"], r["window_end_ms"]] for r in marks],
                "ce": cycle_end or 0,
            }
            return acct["epoch"], snap

        with telemetry.client_span("postgresql", "snapshot"):
            return await self.run(run)

    async def hold_status(self, account_id: str, hold_id: str) -> str | None:
        return await self.run(lambda c: c.fetchval(Q["hold_status"], account_id, hold_id))

    async def operation(self, account_id: str, key: str) -> asyncpg.Record | None:
        return await self.run(lambda c: c.fetchrow(Q["operation"], account_id, key))

    async def admin(self, account_id: str, key: str, kind: str, request_hash: str, now_ms: int,
                    body: Callable[[asyncpg.Connection], Awaitable[str]]) -> tuple[str, bool]:
        """Run an administrative change once per idempotency key, in one transaction.

        `body` makes the change and returns the answer to store. Returns (answer, replayed); a key
        reused with other parameters raises IdempotencyMismatch naming what differs (request_hash is
        a request fingerprint, domain.model.request_fingerprint).
        """

        first: list[asyncpg.Record] = []  # the key's first use, when this request is not it

        async def run(conn: asyncpg.Connection) -> tuple[str, bool]:
            async with conn.transaction():
                # take the key first: a concurrent duplicate waits here, then sees it taken
                status = await conn.execute(Q["insert_operation"], account_id, key, kind, request_hash,
                                            "", now_ms)
                if status.endswith(" 0"):
                    prev = await conn.fetchrow(Q["operation"], account_id, key)
                    if prev["kind"] != kind or not same_request(prev["request_hash"], request_hash):
                        first.append(prev)
                        return "", False
                    return prev["response"], True
                answer = await body(conn)
                await conn.execute(Q["fence_account"], account_id)
                await conn.execute(Q["store_operation_answer"], account_id, key, answer)
                return answer, False

        answer, replayed = await self.run(run)
        if first:  # raised out here: an error inside would cost the pool its connection
            prev = first[-1]
            raise idempotency_mismatch(key, request_hash, prev["request_hash"],
                                       prev["kind"] if prev["kind"] != kind else "")
        return answer, replayed

    async def expire_due(self, now_ms: int, limit: int = 200) -> list[str]:
        """Return holds past their time to their grants (with ledger rows); the accounts touched."""

        async def run(conn: asyncpg.Connection) -> list[str]:
            touched = []
            for r in await conn.fetch(Q["due_hold_accounts"], now_ms, limit):
                async with conn.transaction():
                    # an account a ledger batch holds is skipped until the next pass: taking its row first
                    # keeps the sweeper and the writers from waiting on each other's locks
                    if await conn.fetchval(Q["lock_account_nowait"], r["account_id"]) is None:
                        continue
                    n = await conn.fetchval(Q["expire_account_holds"], r["account_id"], now_ms)
                if n:
                    touched.append(r["account_id"])
            return touched

        return await self.run(run)

    async def ensure_partitions(self, now_ms: int) -> int:
        """Create the ledger's monthly partitions from last month to three months ahead (N8); how many
        were new. Idempotent, safe with several replicas (a concurrent creation is retried next time)."""
        try:
            return int(await self.run(lambda c: c.fetchval(Q["ensure_ledger_partitions"], now_ms)))
        except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
            return 0

    async def ping(self) -> bool:
        try:
            return bool(await self.run(lambda c: c.fetchval(Q["ping"])))
        except StorageError:
            return False

    async def close(self) -> None:
        """Close the pool, waiting at most the backend timeout for connections in use."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.pool.close()
        except TimeoutError:
            self.pool.terminate()
