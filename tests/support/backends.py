"""Real backends for the tests: a Valkey server of their own, and Postgres.

Postgres comes from QUOTA_TEST_POSTGRES_DSN, else a local server on 127.0.0.1:5432, else an
embedded one; every test session gets a fresh database. Redis is always a Valkey process of the
session's own, so tests may flush or stop it without touching anything else.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg


async def _try_connect(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def configured_postgres_dsn() -> str | None:
    """QUOTA_TEST_POSTGRES_DSN, else a local server on 127.0.0.1:5432, else None."""
    dsn = os.environ.get("QUOTA_TEST_POSTGRES_DSN")
    if dsn:
        return dsn
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    if await _try_connect(local):
        return local
    return None


async def postgres_admin_dsn(tmp: Path) -> str:
    """A configured or local Postgres, else an embedded one in `tmp` (for tools outside pytest)."""
    dsn = await configured_postgres_dsn()
    if dsn:
        return dsn
    from quota_service import embedded

    return embedded.start_postgres(tmp)


def with_database(dsn: str, name: str) -> str:
    """The same server, another database (works for host:port and for ?host=/socket DSNs)."""
    base, _, query = dsn.partition("?")
    head, _, _ = base.rpartition("/")
    return f"{head}/{name}" + (f"?{query}" if query else "")


async def create_database(admin_dsn: str) -> tuple[str, str]:
    name = f"quota_test_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name), name


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
