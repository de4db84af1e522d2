"""The database schema as text, read from Postgres's catalogue: tables, columns, types, defaults,
constraints, indexes, triggers and the functions' signatures.

``storage/sql/schema.sql`` is this dump of a fresh database built by the migration chain (and the
functions step), so a reviewer reads the whole schema in one place, and a test proves the chain still
builds exactly it. The dump is made from catalogue queries, not pg_dump, which need not be installed.

    python -m quota_service.storage.schema_dump --fresh postgresql://postgres@127.0.0.1:5432/postgres --write

migrates a new database on that server (dropped afterwards) and writes schema.sql; ``--check``
compares instead (exit 1 and a diff when they differ); ``--dsn`` dumps an existing database as it is
(to compare a deployment with schema.sql).

Left out: the ledger's monthly partitions (``ledger_YYYY_MM``, made by ledger_ensure_partitions for
the months around the current date, so a dump made another month would differ) and what partitions
inherit from their parent. The schema name is left out of definitions, so any schema compares.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import re
import sys
import uuid
from importlib import resources
from pathlib import Path

import asyncpg

from quota_service.storage.postgres import migrate
from quota_service.storage.queries import Q, template

MONTHLY_PARTITION = re.compile(r"ledger_\d{4}_\d{2}")
REGENERATE = "python -m quota_service.storage.schema_dump --fresh <admin DSN> --write"
HEADER = f"""\
-- The schema that the migration chain (sql/migrations/*.sql, then sql/functions/*.sql) builds, read
-- from a fresh database's catalogue by storage/schema_dump.py. Generated: do not edit; regenerate with
--   {REGENERATE}
-- (tests/integration/test_schema.py checks it). The ledger's monthly partitions (ledger_YYYY_MM) depend
-- on the date and are left out.
"""


def schema_file() -> Path:
    """storage/sql/schema.sql in the source tree (the package is installed in place)."""
    return Path(str(resources.files("quota_service.storage") / "sql" / "schema.sql"))


async def dump(conn: asyncpg.Connection) -> str:
    """The schema of the connection's current schema, as schema.sql holds it (the catalogue queries
    write each definition; this joins them)."""
    schema = await conn.fetchval(Q["schema_name"])
    functions = [r["definition"] for r in await conn.fetch(Q["schema_functions"])]
    parts: dict[str, list[str]] = {}
    for r in await conn.fetch(Q["schema_table_parts"]):
        parts.setdefault(r["table_name"], []).append(r["definition"])
    out = [HEADER, "\n".join(["-- Functions (their bodies: sql/functions/<name>.sql)", *functions]) + "\n"]
    for t in await conn.fetch(Q["schema_tables"]):
        if not MONTHLY_PARTITION.fullmatch(t["name"]):
            out.append("\n".join([t["definition"], *parts.get(t["name"], [])]) + "\n")
    return unqualified("\n".join(out), schema)


def unqualified(text: str, schema: str) -> str:
    """Definitions without the schema's name (``ON public.ledger`` -> ``ON ledger``)."""
    return re.sub(rf'(?<=[\s(,]){re.escape(schema)}\.', "", text)


async def dump_fresh(admin_dsn: str) -> str:
    """Migrate a new, empty database on the server of `admin_dsn`, dump it and drop it."""
    name = f"quota_schema_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(template("create_database", database=name))
        try:
            conn = await asyncpg.connect(admin_dsn, database=name)
            try:
                await migrate(conn)
                return await dump(conn)
            finally:
                await conn.close()
        finally:
            await admin.execute(template("drop_database", database=name))
    finally:
        await admin.close()


async def dump_existing(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return await dump(conn)
    finally:
        await conn.close()


def difference(expected: str, actual: str) -> str:
    """A unified diff from schema.sql (expected) to the database's schema (actual); "" when equal."""
    return "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                        "schema.sql", "migrated database"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quota_service.storage.schema_dump", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--fresh", metavar="ADMIN_DSN", help="migrate a new database on this server and dump it")
    source.add_argument("--dsn", help="dump this database as it is")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="write storage/sql/schema.sql")
    action.add_argument("--check", action="store_true", help="compare with storage/sql/schema.sql")
    args = p.parse_args(argv)
    text = asyncio.run(dump_fresh(args.fresh) if args.fresh else dump_existing(args.dsn))
    if args.write:
        schema_file().write_text(text)
        print(f"wrote {schema_file()}")
    elif args.check:
        diff = difference(schema_file().read_text(), text)
        if diff:
            print(diff, end="")
            return 1
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
