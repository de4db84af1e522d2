"""Fixtures shared by every test layer: real Valkey, real Postgres, a real server on port 0."""

from __future__ import annotations

import asyncio
import io
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hypothesis  # noqa: F401  imported at start: a first import at the session's end trips a CPython 3.11 compiler bug
import pytest
import pytest_timeout
from quota_client import AsyncQuotaClient, MeterPolicy
from quota_service import embedded
from quota_service.domain.clock import ManualClock
from quota_service.server import QuotaServer
from quota_service.settings import Settings

from tests.support import backends

_dump_thread_stacks = pytest_timeout.dump_stacks


def _dump_stacks_and_tasks(terminal: object) -> None:
    """On a test timeout, show where every asyncio task waits, not only the threads (which show
    nothing but the event loop's select)."""
    _dump_thread_stacks(terminal)
    loop = asyncio._get_running_loop()
    if loop is None:
        return
    for task in asyncio.all_tasks(loop):
        out = io.StringIO()
        out.write(f"{task!r}\n")
        for frame in task.get_stack():
            code = frame.f_code
            out.write(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}\n")
        terminal.sep("~", f"task {task.get_name()}")  # type: ignore[attr-defined]
        terminal.write(out.getvalue())  # type: ignore[attr-defined]


pytest_timeout.dump_stacks = _dump_stacks_and_tasks


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[embedded.ValkeyProcess]:
    server = embedded.start_valkey(tmp_path_factory.mktemp("valkey"), persist=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def pg_dsn() -> AsyncIterator[str]:
    admin = await backends.configured_postgres_dsn()
    owned = None
    if admin is None:
        # No Postgres here: an embedded one, outside pytest's temp folder (as root the server runs as
        # another OS user, which must reach its data; pytest makes its own folder private)
        from tests.support.owned_backends import OwnedPostgres

        root = Path(tempfile.mkdtemp(prefix="quota-test-pg-"))
        owned = OwnedPostgres(root)
        await asyncio.to_thread(owned.start)
        admin = owned.admin_dsn
    dsn, name = await backends.create_database(admin)
    yield dsn
    await backends.drop_database(admin, name)
    if owned is not None:
        owned.close()
        shutil.rmtree(owned.root, ignore_errors=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def test_settings(redis_url: str, pg_dsn: str, **overrides: object) -> Settings:
    values: dict[str, object] = dict(redis_url=redis_url, postgres_dsn=pg_dsn, port=0,
                                     key_prefix=f"t{uuid.uuid4().hex[:8]}", sweep_interval_ms=50,
                                     backend_timeout_ms=1000, commit_timeout_ms=2000, pending_grace_ms=10_000,
                                     shutdown_grace_s=2.0, auth=False)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
async def server(valkey: embedded.ValkeyProcess, pg_dsn: str, clock: ManualClock) -> AsyncIterator[QuotaServer]:
    srv = QuotaServer(test_settings(valkey.url, pg_dsn), clock=clock)
    await srv.start()
    yield srv
    await srv.stop(1)


@pytest.fixture
async def client(server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    c = AsyncQuotaClient(f"127.0.0.1:{server.port}", timeout_s=10)
    yield c
    await c.close()


@pytest.fixture
def account_id() -> str:
    return f"acct-{uuid.uuid4().hex[:12]}"


async def make_account(client: AsyncQuotaClient, account_id: str, *, units: int = 0, meter: str = "ai_dialog",
                       policies: tuple[MeterPolicy, ...] | None = None) -> None:
    """An active account with one plan grant of `units` (if any) on `meter`."""
    await client.create_account(account_id, policies=policies if policies is not None else (MeterPolicy(meter),))
    if units:
        await client.top_up(account_id, units, meter=meter, source="plan")


@pytest.fixture
def root() -> Path:
    return Path(__file__).resolve().parent.parent
