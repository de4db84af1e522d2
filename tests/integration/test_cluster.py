"""SPEC N8: the service on a real Redis Cluster of three primaries.

The cluster is started from valkey-server binaries (cluster-enabled, config in a temporary folder),
joined with `valkey-cli --cluster create`, and the service is pointed at one node with
QUOTA_REDIS_CLUSTER. An account's keys share its {hash tag}, so each Lua script touches one slot;
accounts spread over the nodes. A slot is migrated under load to check that the service follows
MOVED/ASK (and rides out TRYAGAIN) without losing or duplicating a grant.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from quota_client import AsyncQuotaClient, QuotaClientError
from quota_service.server import QuotaServer
from quota_service.storage.keys import Keys
from redis import exceptions as rexc

from tests.conftest import make_account, test_settings
from tests.support.ledger import ledger_sums, operation_keys
from tests.support.owned_backends import ValkeyCluster

METER = "ai_dialog"
pytestmark = pytest.mark.timeout(120)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    c = ValkeyCluster(tmp_path_factory.mktemp("cluster"), primaries=3).start(within_s=60)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
async def cluster_server(cluster: ValkeyCluster, pg_dsn: str) -> AsyncIterator[QuotaServer]:
    # a backend timeout that a busy machine does not hit by accident (see tests/fault/test_lost_redis_reply.py
    # for what a late Redis reply does to a key)
    settings = test_settings(f"redis://127.0.0.1:{cluster.ports[0]}/0", pg_dsn, redis_cluster=True,
                             backend_timeout_ms=3000)
    srv = QuotaServer(settings)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(1)


@pytest.fixture(scope="module")
async def cclient(cluster_server: QuotaServer) -> AsyncIterator[AsyncQuotaClient]:
    c = AsyncQuotaClient(f"127.0.0.1:{cluster_server.port}", timeout_s=15, retries=8)
    try:
        yield c
    finally:
        await c.close()


class Nodes:
    """Plain (non-cluster) connections to every node, for looking at where keys really are."""

    def __init__(self, cluster: ValkeyCluster) -> None:
        self.ports = cluster.ports
        self.ids = cluster.node_ids()
        self.conn = {p: aioredis.Redis(port=p, decode_responses=True) for p in self.ports}

    async def close(self) -> None:
        for c in self.conn.values():
            await c.aclose()

    async def keyslot(self, key: str) -> int:
        return int(await self.conn[self.ports[0]].execute_command("CLUSTER", "KEYSLOT", key))

    async def owner(self, slot: int) -> int:
        """The port of the node that serves `slot`, by that node's own view (CLUSTER NODES, "myself")."""
        owners = []
        for p, c in self.conn.items():
            text = await c.execute_command("CLUSTER", "NODES")
            me = next(line for line in text.splitlines() if "myself" in line.split()[2])
            for r in me.split()[8:]:
                if r.startswith("["):
                    continue  # a migration in progress, not ownership
                lo, _, hi = r.partition("-")
                if int(lo) <= slot <= int(hi or lo):
                    owners.append(p)
        assert len(owners) == 1, f"slot {slot} is claimed by {owners}"
        return owners[0]

    async def holds(self, port: int, key: str) -> bool:
        """Whether the node at `port` stores `key` itself (a plain EXISTS; another node's key is MOVED)."""
        try:
            return bool(await self.conn[port].exists(key))
        except (rexc.MovedError, rexc.AskError):
            return False

    async def wait_confirmed(self, keys: Keys, accounts: list[str], within_s: float = 5) -> dict[str, int]:
        """Poll until every account's pending set is empty on its node (its mutations were confirmed
        after their commit); returns what is still pending per account when the time is up."""
        deadline = time.monotonic() + within_s
        while True:
            left = {}
            for a in accounts:
                pending = keys.account(a)[4]
                node = await self.owner(await self.keyslot(pending))
                if n := await self.conn[node].zcard(pending):
                    left[a] = n
            if not left or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.1)

    async def migrate(self, slot: int, src: int, dst: int) -> int:
        """Move `slot` from node `src` to node `dst` the way redis-cli --cluster reshard does; returns keys moved."""
        s, d = self.conn[src], self.conn[dst]
        await d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[src])
        await s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[dst])
        moved = 0
        while keys := await s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 200):
            await s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 10_000, "REPLACE", "KEYS", *keys)
            moved += len(keys)
        # the new owner first, then the old one, then the rest
        for p in [dst, src, *(p for p in self.ports if p not in (src, dst))]:
            await self.conn[p].execute_command("CLUSTER", "SETSLOT", slot, "NODE", self.ids[dst])
        return moved


@pytest.fixture(scope="module")
async def nodes(cluster: ValkeyCluster) -> AsyncIterator[Nodes]:
    n = Nodes(cluster)
    try:
        yield n
    finally:
        await n.close()


def new_accounts(n: int, tag: str) -> list[str]:
    u = uuid.uuid4().hex[:6]
    return [f"{tag}-{u}-{i}" for i in range(n)]


# -- tests -----------------------------------------------------------------------------------------


async def test_n8_every_key_of_an_account_is_in_one_slot_and_accounts_spread_over_the_nodes(
        cluster_server: QuotaServer, cclient: AsyncQuotaClient, nodes: Nodes) -> None:
    keys = Keys(cluster_server.settings.key_prefix)
    accounts = new_accounts(20, "spread")
    owner: dict[str, int] = {}
    for a in accounts:
        names = [*keys.account(a), keys.idempotency(a, "some-key"), keys.idempotency(a, "-"),
                 keys.dedup(a, METER, "visitor-1"), keys.dedup(a, METER, "-")]
        slots = {await nodes.keyslot(k) for k in names}
        assert len(slots) == 1, f"{a}: keys in slots {slots}"
        owner[a] = await nodes.owner(slots.pop())
    assert len(set(owner.values())) >= 2, f"20 accounts all on one node: {owner}"

    # the state really lives on the owning node, and only there
    for a in accounts:
        await make_account(cclient, a, units=3, meter=METER)
        d = await cclient.consume(a, METER, 1, idempotency_key="first")
        assert d.granted and d.remaining == 2
        for p in nodes.ports:
            assert await nodes.holds(p, keys.account(a)[0]) == (p == owner[a])
            assert await nodes.holds(p, keys.idempotency(a, "first")) == (p == owner[a])


async def test_n8_reserve_commit_release_consume_and_balance_on_every_node(
        cluster_server: QuotaServer, cclient: AsyncQuotaClient, nodes: Nodes, pg_dsn: str) -> None:
    keys = Keys(cluster_server.settings.key_prefix)
    # one account per node
    by_node: dict[int, str] = {}
    for a in new_accounts(60, "ops"):
        by_node.setdefault(await nodes.owner(await nodes.keyslot(keys.account(a)[0])), a)
        if len(by_node) == len(nodes.ports):
            break
    assert len(by_node) == len(nodes.ports)

    for a in by_node.values():
        await make_account(cclient, a, units=20, meter=METER)
        hold = await cclient.reserve(a, METER, 5)
        assert hold.granted and hold.remaining == 15
        done = await cclient.commit(a, hold.reservation_id, 3)
        assert done.granted and done.remaining == 17
        other = await cclient.reserve(a, METER, 4)
        assert other.granted and other.remaining == 13
        back = await cclient.release(a, other.reservation_id)
        assert back.granted and back.remaining == 17
        eaten = await cclient.consume(a, METER, 7, idempotency_key="c1")
        assert eaten.granted and eaten.remaining == 10
        again = await cclient.consume(a, METER, 7, idempotency_key="c1")
        assert again.replayed and again.remaining == 10
        check = await cclient.check(a, METER, 11)
        assert not check.granted and check.reason == "QUOTA_EXHAUSTED"
        m = (await cclient.balance(a)).meters[METER]
        assert (m.granted, m.used, m.held, m.remaining) == (20, 10, 0, 10)
        sums = await ledger_sums(pg_dsn, a)
        assert (sums["proj_used"], sums["proj_held"], sums["used"], sums["held"]) == (10, 0, 10, 0)


async def test_n8_committed_mutations_are_confirmed_in_redis_on_every_node(
        cluster_server: QuotaServer, cclient: AsyncQuotaClient, nodes: Nodes) -> None:
    """After its ledger commit, a mutation leaves the account's pending set (HotPath.confirm).

    Left pending, every account would be rebuilt from Postgres once QUOTA_PENDING_GRACE_MS passes,
    and every retry of a key would go to Postgres.
    """
    keys = Keys(cluster_server.settings.key_prefix)
    accounts = new_accounts(9, "confirm")
    assert len({await nodes.owner(await nodes.keyslot(keys.account(a)[0])) for a in accounts}) >= 2
    for a in accounts:
        await make_account(cclient, a, units=10, meter=METER)
        for i in range(3):
            assert (await cclient.consume(a, METER, 1, idempotency_key=f"c{i}")).granted
    left = await nodes.wait_confirmed(keys, accounts, within_s=5)
    assert left == {}, f"mutations still pending 5 s after their commit (account: count): {left}"


async def consume_load(client: AsyncQuotaClient, accounts: list[str], workers: int, calls: int,
                       tag: str, acked: dict[str, list[str]], on_ack: asyncio.Event | None = None,
                       ack_target: int = 0) -> list[tuple[float, str]]:
    """`workers` x `calls` one-unit consumes round the accounts; returns (end time, outcome) per call."""
    out: list[tuple[float, str]] = []
    count = 0

    async def worker(w: int) -> None:
        nonlocal count
        for i in range(calls):
            a = accounts[(w * 7 + i) % len(accounts)]
            key = f"{tag}-w{w}-{i}"
            for attempt in range(3):  # the client retries UNAVAILABLE itself; this is a last resort
                try:
                    d = await client.consume(a, METER, 1, idempotency_key=key)
                    break
                except QuotaClientError as exc:
                    if exc.code != grpc.StatusCode.UNAVAILABLE or attempt == 2:
                        raise
            if d.granted:
                acked[a].append(key)
                count += 1
                if on_ack is not None and count >= ack_target:
                    on_ack.set()
            else:
                assert d.reason == "QUOTA_EXHAUSTED", d
            out.append((time.monotonic(), "granted" if d.granted else d.reason))

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return out


async def balance_of(client: AsyncQuotaClient, account: str) -> tuple[int, int, int]:
    m = (await client.balance(account)).meters[METER]
    return m.used, m.held, m.remaining


async def assert_ledger_agrees(client: AsyncQuotaClient, pg_dsn: str, acked: dict[str, list[str]],
                               supply: int) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        for a, keys in acked.items():
            assert len(keys) <= supply, f"{a}: {len(keys)} granted of {supply}"
            rows = await conn.fetchval("SELECT count(*) FROM ledger WHERE account_id = $1 AND kind = 'consume'", a)
            distinct = await conn.fetchval("SELECT count(DISTINCT idempotency_key) FROM ledger "
                                           "WHERE account_id = $1 AND kind = 'consume'", a)
            assert rows == distinct == len(keys), f"{a}: {rows} rows, {distinct} keys, {len(keys)} acknowledged"
            assert set(keys) <= await operation_keys(pg_dsn, a)
            sums = await ledger_sums(pg_dsn, a)
            assert sums["used"] == sums["proj_used"] == len(keys)
            want = (len(keys), 0, supply - len(keys))
            deadline = time.monotonic() + 20  # an unconfirmed mutation is settled after the pending grace
            while (got := await balance_of(client, a)) != want and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert got == want, f"{a}: service (used, held, remaining) {got}, ledger {want}"
    finally:
        await conn.close()


async def test_n8_concurrent_consumes_across_the_cluster_never_overgrant(
        cluster_server: QuotaServer, cclient: AsyncQuotaClient, nodes: Nodes, pg_dsn: str) -> None:
    supply, workers, calls = 60, 16, 100  # demand 1600 for a supply of 20 x 60 = 1200
    accounts = new_accounts(20, "load")
    keys = Keys(cluster_server.settings.key_prefix)
    owners = {await nodes.owner(await nodes.keyslot(keys.account(a)[0])) for a in accounts}
    assert len(owners) >= 2
    for a in accounts:
        await make_account(cclient, a, units=supply, meter=METER)
    acked: dict[str, list[str]] = {a: [] for a in accounts}
    await consume_load(cclient, accounts, workers, calls, "n8", acked)
    assert sum(len(k) for k in acked.values()) == supply * len(accounts), "all supply granted, none twice"
    await assert_ledger_agrees(cclient, pg_dsn, acked, supply)


async def test_n8_slot_migrated_under_load_calls_follow_moved(
        cluster_server: QuotaServer, cclient: AsyncQuotaClient, nodes: Nodes, pg_dsn: str) -> None:
    keys = Keys(cluster_server.settings.key_prefix)
    supply, workers, calls = 400, 8, 60  # demand 480 for 400
    a = new_accounts(1, "moving")[0]
    slot = await nodes.keyslot(keys.account(a)[0])
    src = await nodes.owner(slot)
    dst = next(p for p in nodes.ports if p != src)
    await make_account(cclient, a, units=supply, meter=METER)

    acked: dict[str, list[str]] = {a: []}
    quarter = asyncio.Event()
    migrated_at: list[float] = []

    async def migrate() -> int:
        await quarter.wait()
        moved = await nodes.migrate(slot, src, dst)
        migrated_at.append(time.monotonic())
        return moved

    mig = asyncio.create_task(migrate())
    try:
        results = await consume_load(cclient, [a], workers, calls, "mv", acked, quarter, supply // 4)
        moved = await asyncio.wait_for(mig, 60)
    finally:
        if not mig.done():
            mig.cancel()
    assert moved >= 5, "the account's state and idempotency records moved"
    assert await nodes.owner(slot) == dst
    assert await nodes.holds(dst, keys.account(a)[0]) and not await nodes.holds(src, keys.account(a)[0])
    after = [r for t, r in results if t > migrated_at[0]]
    print(f"\nslot {slot}: {moved} keys moved {src} -> {dst} after {supply // 4} grants; "
          f"{len(after)} calls answered after the migration ({after.count('granted')} granted)")
    assert after and "granted" in after, "calls were served by the new owner after the migration"
    # the service's cluster client followed MOVED: its slot map now names the new owner
    assert cluster_server.store.client.nodes_manager.slots_cache[slot][0].port == dst
    assert len(acked[a]) == supply
    await assert_ledger_agrees(cclient, pg_dsn, acked, supply)

    # and afterwards, replays and fresh calls go to the new owner
    first = acked[a][0]
    replay = await cclient.consume(a, METER, 1, idempotency_key=first)
    assert replay.granted and replay.replayed
    m = (await cclient.balance(a)).meters[METER]
    assert (m.used, m.remaining) == (supply, 0)

