"""Redis adapter: the hot path's atomic steps, one Lua script each (lua/*.lua).

Scripts run with EVALSHA; after a Redis restart the driver reloads them on NOSCRIPT. Driver errors
are wrapped as StorageError, which callers see as UNAVAILABLE. Answers are decoded here, once, into
the typed forms of storage/wire.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from quota_service import telemetry
from quota_service.errors import StorageError
from quota_service.storage.keys import Keys
from quota_service.storage.wire import (
    Answer,
    BalanceAnswer,
    SnapshotJSON,
    answer_from_text,
    answers_from_text,
    balance_from_text,
)

T = TypeVar("T")
SCRIPTS = ("reserve", "reserve_many", "resolve", "load", "balance", "confirm", "invalidate")
# the shared parts every script is prefixed with, in this order (each may use the ones before it)
PRELUDE = ("_prelude", "_reserve")


@dataclass(frozen=True, slots=True)
class ReserveItem:
    """One reservation as reserve.lua / reserve_many.lua take it (units, ms since the epoch)."""

    meter: str
    amount: int
    idem_key: str  # "" for a dry run
    request_hash: str  # the request fingerprint bound to the key
    hold_id: str
    hold_expires_ms: int
    dedup_key: str = ""  # "" = no caller-given dedup
    dedup_window_ms: int = 0
    feature: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


def script_source(name: str) -> str:
    """The script's text with the shared prelude parts in front (what Redis runs)."""
    lua = resources.files("quota_service.storage") / "lua"
    return "\n".join((lua / f"{part}.lua").read_text() for part in (*PRELUDE, name))


def connect(url: str, *, timeout_s: float, cluster: bool = False, max_connections: int = 256) -> Any:
    """A client for a single Redis (redis://) or a cluster (cluster=True, any node's URL).

    Past max_connections a call waits up to timeout_s for a free connection rather than failing.
    The driver does not retry on its own: a script whose reply was lost may have run, and the hot
    path decides what to do about that (it drops the account's state; see HotPath).
    """
    opts: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                            "decode_responses": True, "retry": Retry(NoBackoff(), 0)}
    if cluster:
        return RedisCluster.from_url(url, max_connections=max_connections, **opts)
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout_s,
                                                    health_check_interval=30, **opts)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool


class RedisStore:
    """Account state in Redis. Every method is atomic per account (one script call)."""

    def __init__(self, client: Any, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        # a cluster pipeline refuses scripts: there, one call per account, concurrently
        self.cluster = isinstance(client, RedisCluster)
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPTS}

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, rexc.ReadOnlyError,
                rexc.ClusterDownError, rexc.TryAgainError, rexc.RedisClusterException, OSError) as exc:
            raise StorageError(f"redis: {exc}") from exc
        except rexc.ResponseError as exc:
            # full (noeviction), failing over or starting: the backend is unavailable, not the request bad
            if str(exc).startswith(("OOM", "MASTERDOWN", "LOADING", "READONLY", "CLUSTERDOWN")):
                raise StorageError(f"redis: {exc}") from exc
            raise

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        with telemetry.client_span("redis", name):
            return await self.run(lambda: script(keys=keys, args=args))

    def _item_call(self, account_id: str, item: ReserveItem, keys: list[str], args: list[Any]) -> None:
        keys.append(self.keys.idempotency(account_id, item.idem_key or "-"))
        keys.append(self.keys.dedup(account_id, item.meter, item.dedup_key or "-"))
        args.extend([item.meter, item.amount, item.request_hash, item.hold_id, item.hold_expires_ms,
                     item.dedup_window_ms if item.dedup_key else 0, item.feature, json.dumps(item.attributes)])

    async def reserve(self, account_id: str, item: ReserveItem, *, now_ms: int, mode: str,
                      pending_deadline_ms: int, idem_ttl_ms: int) -> Answer:
        """Decide one reservation (reserve.lua)."""
        keys = self.keys.account(account_id)
        args: list[Any] = []
        self._item_call(account_id, item, keys, args)
        meter, amount, request_hash, hold_id, hold_exp, dedup_ms, feature, attrs = args
        raw = await self._run("reserve", keys, [now_ms, mode, meter, amount, request_hash, hold_id, hold_exp,
                                                pending_deadline_ms, idem_ttl_ms, dedup_ms, feature, attrs])
        return answer_from_text(raw)

    async def reserve_many(self, groups: dict[str, list[ReserveItem]], *, now_ms: int, mode: str,
                           pending_deadline_ms: int, idem_ttl_ms: int) -> dict[str, list[Answer] | Answer]:
        """Decide reservations of several accounts: one reserve_many.lua call per account, all of
        them in one pipeline (one round trip; per node in a cluster). Each call is atomic for its account.

        Returns account -> one answer per item, or one error answer for the whole account.
        """
        accounts = list(groups)
        calls = []
        for account_id in accounts:
            keys = self.keys.account(account_id)
            args: list[Any] = [now_ms, mode, pending_deadline_ms, idem_ttl_ms]
            for item in groups[account_id]:
                self._item_call(account_id, item, keys, args)
            calls.append((keys, args))
        with telemetry.client_span("redis", "reserve_many"):
            raws = await self._many("reserve_many", calls)
        return {a: answers_from_text(r) for a, r in zip(accounts, raws, strict=True)}

    async def resolve(self, account_id: str, *, now_ms: int, op: str, hold_id: str, actual: int,
                      idem_key: str, request_hash: str, pending_deadline_ms: int,
                      idem_ttl_ms: int) -> Answer:
        keys = self.keys.account(account_id)
        keys.append(self.keys.idempotency(account_id, idem_key))
        raw = await self._run("resolve", keys, [now_ms, op, hold_id, actual, request_hash,
                                                pending_deadline_ms, idem_ttl_ms])
        return answer_from_text(raw)

    async def load(self, account_id: str, epoch: int, snapshot: SnapshotJSON) -> bool:
        """Install a snapshot unless Redis already holds this epoch or a newer one."""
        res = await self._run("load", self.keys.account(account_id), [epoch, json.dumps(snapshot)])
        return res == "LOADED"  # type: ignore[no-any-return]

    async def balance(self, account_id: str, now_ms: int) -> BalanceAnswer:
        raw = await self._run("balance", self.keys.account(account_id), [now_ms])
        return balance_from_text(raw)

    async def confirm(self, groups: dict[tuple[str, int], list[str]]) -> None:
        """Mark mutations durable (Postgres committed them), so they no longer force a rebuild.

        groups: (account, epoch) -> idempotency keys; one script call per account, pipelined.
        """
        calls = []
        for (account_id, epoch), idem_keys in groups.items():
            keys = [self.keys.account(account_id)[4]]
            keys.extend(self.keys.idempotency(account_id, k) for k in idem_keys)
            calls.append((keys, [epoch]))
        with telemetry.client_span("redis", "confirm"):
            await self._many("confirm", calls)

    async def _many(self, name: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run one script for several accounts: one pipeline (one round trip), or in a cluster, whose
        pipelines refuse scripts, concurrent calls (each goes to its account's node)."""
        script = self._scripts[name]
        if self.cluster:
            async def one(keys: list[str], args: list[Any]) -> Any:
                return await self.run(lambda: script(keys=keys, args=args))

            return list(await asyncio.gather(*(one(k, a) for k, a in calls)))

        async def run() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await script(keys=keys, args=args, client=pipe)
                return await pipe.execute()  # type: ignore[no-any-return]

        return await self.run(run)

    async def forget_answer(self, account_id: str, idempotency_key: str) -> None:
        """Drop the stored answer of a key (a denial the caller has not been given yet)."""
        await self.run(lambda: self.client.delete(self.keys.idempotency(account_id, idempotency_key)))

    async def invalidate(self, account_id: str) -> None:
        await self._run("invalidate", self.keys.account(account_id), [])

    async def epoch(self, account_id: str) -> int | None:
        raw = await self.run(lambda: self.client.hget(self.keys.account(account_id)[0], "ep"))
        return None if raw is None else int(raw)

    async def time_ms(self) -> float:
        """Redis's clock (TIME): ms since the epoch, with microseconds. In a cluster, the default node's."""
        if self.cluster:
            sec, usec = await self.run(lambda: self.client.time(target_nodes=RedisCluster.DEFAULT_NODE))
        else:
            sec, usec = await self.run(lambda: self.client.time())
        return int(sec) * 1000 + int(usec) / 1000

    async def ping(self) -> bool:
        try:
            return bool(await self.run(lambda: self.client.ping()))
        except StorageError:
            return False

    async def close(self) -> None:
        await self.client.aclose()
