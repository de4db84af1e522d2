"""The migration chain builds exactly storage/sql/schema.sql, and the functions of sql/functions/ are
the ones in force: applied after the migrations, at every start, with the migrations' signatures.

Every test migrates a database of its own (the session's database has months and rows of other tests).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest
from quota_service.storage.postgres import apply_functions, functions, migrate, migrations
from quota_service.storage.queries import Q, quote_ident, template
from quota_service.storage.schema_dump import REGENERATE, difference, dump, dump_fresh, schema_file

from tests.support import backends

BODY = re.compile(r"\bAS \$\$(.*)\$\$;\s*\Z", re.S)


@pytest.fixture
async def fresh(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a new, empty database on the test server (dropped afterwards)."""
    dsn, name = await backends.create_database(pg_dsn)
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()
        await backends.drop_database(pg_dsn, name)


async def signatures(conn: asyncpg.Connection) -> dict[str, tuple[str, str]]:
    """name -> (arguments, result) of every function of the schema."""
    return {r["name"]: (r["arguments"], r["result"]) for r in await conn.fetch(Q["schema_functions"])}


async def bodies(conn: asyncpg.Connection) -> dict[str, str]:
    return {r["name"]: r["body"] for r in await conn.fetch(Q["schema_functions"])}


def file_bodies() -> dict[str, str]:
    """name -> the body (between ``AS $$`` and ``$$;``) of each sql/functions/<name>.sql."""
    out = {}
    for name, sql in functions():
        m = BODY.search(sql)
        assert m is not None, f"functions/{name}.sql does not end with AS $$ ... $$;"
        assert re.search(rf"^CREATE OR REPLACE FUNCTION {name}\(", sql, re.M), f"functions/{name}.sql defines {name}"
        out[name] = m.group(1)
    return out


async def run_chain(conn: asyncpg.Connection) -> None:
    """The numbered migrations alone, without the functions step: what a database had before it."""
    for _, _, sql in migrations():
        await conn.execute(sql)


async def test_the_migration_chain_builds_exactly_schema_sql(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    actual = await dump(fresh)
    diff = difference(schema_file().read_text(), actual)
    assert not diff, (f"the migrated database differs from storage/sql/schema.sql; if the change is meant, "
                      f"regenerate it ({REGENERATE}) and review the diff:\n{diff}")


async def test_the_functions_in_force_are_the_files_of_sql_functions(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    assert await bodies(fresh) == file_bodies()


async def test_function_files_keep_the_signatures_the_migrations_made(fresh: asyncpg.Connection) -> None:
    await run_chain(fresh)
    by_migrations = await signatures(fresh)
    assert set(by_migrations) == {name for name, _ in functions()}
    await apply_functions(fresh)
    assert await signatures(fresh) == by_migrations
    # and the bodies are the files' (the folder wins over the migrations' history)
    assert await bodies(fresh) == file_bodies()


async def test_migrate_puts_back_a_function_changed_by_hand(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    await fresh.execute("CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                        "BEGIN\n    RETURN NULL;\nEND $$;")
    assert (await bodies(fresh))["ledger_append_only"] != file_bodies()["ledger_append_only"]
    assert await migrate(fresh) == []  # nothing left to migrate, but the functions step runs each time
    assert await bodies(fresh) == file_bodies()


async def test_a_replica_behind_the_database_leaves_the_functions_alone(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    newer = max(v for v, _, _ in migrations()) + 1
    await fresh.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_a_newer_release')", newer)
    changed = "\nBEGIN\n    RETURN NULL;\nEND "
    await fresh.execute(f"CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql "
                        f"AS $${changed}$$;")
    assert await migrate(fresh) == []
    assert (await bodies(fresh))["ledger_append_only"] == changed


async def test_a_function_file_that_would_add_an_overload_is_refused(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    # as if quota_expire_holds's file had changed its arguments without a migration dropping the old one
    await fresh.execute("CREATE FUNCTION quota_expire_holds(acct text) RETURNS integer LANGUAGE sql AS 'SELECT 0'")
    before = await bodies(fresh)
    await fresh.execute("CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                        "BEGIN\n    RETURN NULL;\nEND $$;")
    with pytest.raises(RuntimeError, match=r"quota_expire_holds\(acct text\), quota_expire_holds\(acct text, now_ms bigint\)"):
        await apply_functions(fresh)
    # the step is one transaction: nothing of it stayed
    assert (await bodies(fresh))["ledger_append_only"] != file_bodies()["ledger_append_only"]
    assert before.keys() == (await bodies(fresh)).keys()


async def test_the_dump_leaves_out_the_monthly_partitions(fresh: asyncpg.Connection) -> None:
    await migrate(fresh)
    await fresh.fetchval(Q["ensure_ledger_partitions"], 1_700_000_000_000)  # Nov 2023 .. Feb 2024
    text = await dump(fresh)
    assert "ledger_2023_11" not in text and "ledger_2024_02" not in text
    assert await fresh.fetchval("SELECT to_regclass('ledger_2023_11') IS NOT NULL")
    assert text == schema_file().read_text()


async def test_the_regenerating_command_dumps_what_schema_sql_holds(pg_dsn: str) -> None:
    # what `schema_dump --fresh <DSN> --check` compares: a database of its own, made and dropped
    assert difference(schema_file().read_text(), await dump_fresh(pg_dsn)) == ""


def test_templates_quote_identifiers() -> None:
    assert quote_ident('quota"; DROP TABLE ledger; --') == '"quota""; DROP TABLE ledger; --"'
    assert template("drop_database", database='a"b') == 'DROP DATABASE IF EXISTS "a""b" WITH (FORCE);'
    with pytest.raises(ValueError):
        quote_ident("a\0b")
