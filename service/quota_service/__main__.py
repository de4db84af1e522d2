"""`quota-service`: start the service, or manage API keys.

    quota-service                      start (embedded Valkey and Postgres when no URLs are given)
    quota-service keys create --role enforce --account acme [--org o] [--label L]
    quota-service keys revoke KEY_ID
    quota-service keys list
    quota-service keys generate        print a new key, stored nowhere: for QUOTA_BOOTSTRAP_ADMIN_KEY(_FILE)
    quota-service verify [--account ID] [--json]   check that balances equal the ledger (N4)
    quota-service health [--service NAME]          exit 0 when the local server is SERVING (container checks)

Without QUOTA_REDIS_URL / QUOTA_POSTGRES_DSN it starts embedded Valkey and Postgres with their data
under QUOTA_DATA_DIR (default .data), and prints an admin API key it keeps in that folder. A
container gets its first admin key from QUOTA_BOOTSTRAP_ADMIN_KEY_FILE instead (bootstrap.py).
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
    sub.add_parser("generate", help="print a new key for QUOTA_BOOTSTRAP_ADMIN_KEY(_FILE); nothing is stored")
    args = p.parse_args(argv)
    if args.cmd == "generate":
        from quota_service.bootstrap import generate_key

        print(generate_key())
        return 0
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
    rows = asyncio.run(_with_db(settings.postgres_dsn, auth.list_keys))
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        print(f"{row['key_id']}  {','.join(row['roles'])}  accounts={','.join(row['accounts']) or '-'}  "
              f"orgs={','.join(row['orgs']) or '-'}  {state}  {row['label']}")
    return 0


def health_command(settings: Settings, argv: list[str]) -> int:
    """A container health check (compose's `healthcheck`), where no gRPC probe is built in: asks the
    local server's gRPC health service, prints the status, exit 0 only when SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    p = argparse.ArgumentParser(prog="quota-service health", description=health_command.__doc__)
    p.add_argument("--target", default=f"127.0.0.1:{settings.port}", help="default: 127.0.0.1:QUOTA_PORT")
    p.add_argument("--service", default="", help='"" readiness (both backends answer; default), "process" liveness')
    p.add_argument("--timeout", type=float, default=2.0, help="seconds")
    args = p.parse_args(argv)
    try:
        with grpc.insecure_channel(args.target) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
    except grpc.RpcError as exc:
        print(f"quota-service health: {exc.code().name}", file=sys.stderr)
        return 1
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def _subcommand(settings: Settings, argv: list[str]) -> int:
    if argv[0] == "keys":
        return keys_command(settings, argv[1:])
    if argv[0] == "health":
        return health_command(settings, argv[1:])
    if argv[0] == "verify":
        from quota_service import verify

        return verify.main(settings, argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"quota-service: {exc}", file=sys.stderr)
        return 2
    if argv:
        return _subcommand(settings, argv)
    from quota_service import embedded
    from quota_service.server import configure_logging, load_catalogues, serve

    try:
        load_catalogues(settings.catalogue_dir)  # fail fast on a broken catalogue, before starting anything
        if settings.bootstrap_admin_key:
            from quota_service.bootstrap import split

            split(settings.bootstrap_admin_key)  # so does a malformed bootstrap key
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
