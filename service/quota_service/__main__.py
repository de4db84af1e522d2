"""`quota-service`: start the service, or manage API keys.

    quota-service                      start (embedded Valkey and Postgres when no URLs are given)
    quota-service keys create --role enforce --account acme [--org o] [--label L]
    quota-service keys revoke KEY_ID
    quota-service keys list
    quota-service verify [--account ID] [--json]   check that balances equal the ledger (N4)

Without QUOTA_REDIS_URL / QUOTA_POSTGRES_DSN it starts embedded Valkey and Postgres with their data
under QUOTA_DATA_DIR (default .data), and prints an admin API key it keeps in that folder.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from pathlib import Path

from quota_service.errors import SettingsError
from quota_service.settings import Settings


async def _with_db(dsn: str, fn):  # type: ignore[no-untyped-def]
    import asyncpg

    from quota_service.storage.postgres import migrate

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        return await fn(conn)
    finally:
        await conn.close()


def _bootstrap_key(settings: Settings) -> str:
    """The embedded setup's admin key: made once, kept in the data folder (mode 0600)."""
    from quota_service import auth

    path = settings.data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    key = asyncio.run(_with_db(settings.postgres_dsn, lambda c: auth.create_key(c, ["admin"], accounts=["*"],
                                                                                 label="embedded bootstrap")))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return str(key)


def keys_command(settings: Settings, argv: list[str]) -> int:
    from quota_service import auth

    p = argparse.ArgumentParser(prog="quota-service keys", description="Manage API keys (needs QUOTA_POSTGRES_DSN).")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--role", action="append", required=True, choices=auth.ROLES)
    c.add_argument("--account", action="append", default=[], help="account in scope (repeatable); '*' = all")
    c.add_argument("--org", action="append", default=[], help="organization in scope (repeatable)")
    c.add_argument("--label", default="")
    r = sub.add_parser("revoke")
    r.add_argument("key_id")
    sub.add_parser("list")
    args = p.parse_args(argv)
    if not settings.postgres_dsn:
        print("quota-service keys: set QUOTA_POSTGRES_DSN", file=sys.stderr)
        return 2
    if args.cmd == "create":
        key = asyncio.run(_with_db(settings.postgres_dsn, lambda conn: auth.create_key(
            conn, args.role, accounts=args.account, orgs=args.org, label=args.label)))
        print(key)
        return 0
    if args.cmd == "revoke":
        ok = asyncio.run(_with_db(settings.postgres_dsn, lambda conn: auth.revoke_key(conn, args.key_id)))
        print("revoked" if ok else "no such active key")
        return 0 if ok else 1
    rows = asyncio.run(_with_db(settings.postgres_dsn, lambda conn: conn.fetch(
        "SELECT key_id, roles, accounts, orgs, label, created_at, revoked_at FROM api_keys ORDER BY created_at")))
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        print(f"{row['key_id']}  {','.join(row['roles'])}  accounts={','.join(row['accounts']) or '-'}  "
              f"orgs={','.join(row['orgs']) or '-'}  {state}  {row['label']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"quota-service: {exc}", file=sys.stderr)
        return 2
    if argv[:1] == ["keys"]:
        return keys_command(settings, argv[1:])
    if argv[:1] == ["verify"]:
        from quota_service import verify

        return verify.main(settings, argv[1:])
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    from quota_service import embedded
    from quota_service.server import configure_logging, load_catalogues, serve

    try:
        load_catalogues(settings.catalogue_dir)  # fail fast on a broken catalogue, before starting anything
    except SettingsError as exc:
        print(f"quota-service: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    embedded_pg = not settings.postgres_dsn
    if embedded_pg or not settings.redis_url:
        try:  # one service per data folder: a second would start a second Valkey on the same files
            data_lock = embedded.lock_data_dir(settings.data_dir)  # noqa: F841  held until the process ends
        except embedded.DataDirBusy as exc:
            print(f"quota-service: {exc}", file=sys.stderr)
            return 2
    if embedded_pg:
        dsn = embedded.start_postgres(settings.data_dir)
        settings = dataclasses.replace(settings, postgres_dsn=dsn)
        print(f"embedded Postgres: {dsn}", file=sys.stderr)
    valkey = None
    if not settings.redis_url:
        valkey = embedded.start_valkey(settings.data_dir / "valkey", die_with_parent=True)
        settings = dataclasses.replace(settings, redis_url=valkey.url)
        print(f"embedded Valkey: {valkey.url}", file=sys.stderr)
    target = f"{settings.host}:{settings.port}"
    if settings.auth and embedded_pg:
        key = _bootstrap_key(settings)
        print(f"admin API key (kept in {Path(settings.data_dir) / 'admin.key'}): {key}", file=sys.stderr)
        print(f"try: QUOTA_API_KEY={key} .venv/bin/quota-cli --target {target} balance ACCOUNT", file=sys.stderr)
    elif not settings.auth:
        print("authentication is OFF (QUOTA_AUTH=false): for local development only", file=sys.stderr)
    print(f"quota service on {target}", file=sys.stderr)
    import uvloop

    try:
        uvloop.run(serve(settings))
    finally:
        if valkey is not None:
            valkey.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
