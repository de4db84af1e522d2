"""Redis adapter: the hot path's atomic steps, one Lua script each (lua/*.lua).

Scripts run with EVALSHA; after a Redis restart the driver reloads them on NOSCRIPT. Driver errors
are wrapped as StorageError, which callers see as UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
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

T = TypeVar("T")
SCRIPTS = ("reserve", "reserve_many", "resolve", "load", "balance", "confirm", "invalidate")


def script_source(name: str) -> str:
    """The script's text with the shared prelude in front (what Redis runs)."""
    lua = resources.files("quota_service.storage") / "lua"
    prelude = (lua / "_prelude.lua").read_text()
    return prelude + "\n" + (lua / f"{name}.lua").read_text()


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

    async def reserve(self, account_id: str, *, now_ms: int, mode: str, meter: str, amount: int,
                      idem_key: str, request_hash: str, hold_id: str, hold_expires_ms: int,
                      pending_deadline_ms: int, idem_ttl_ms: int, dedup_key: str,
                      dedup_window_ms: int, feature: str = "", attributes: dict[str, str] | None = None
                      ) -> dict[str, Any]:
        keys = self.keys.account(account_id)
        keys.append(self.keys.idempotency(account_id, idem_key or "-"))
        keys.append(self.keys.dedup(account_id, meter, dedup_key or "-"))
        raw = await self._run("reserve", keys, [now_ms, mode, meter, amount, request_hash, hold_id,
                                                hold_expires_ms, pending_deadline_ms, idem_ttl_ms,
                                                dedup_window_ms if dedup_key else 0, feature,
                                                json.dumps(attributes or {})])
        return json.loads(raw)  # type: ignore[no-any-return]

    async def reserve_many(self, groups: dict[str, list[dict[str, Any]]], *, now_ms: int, mode: str,
                           pending_deadline_ms: int, idem_ttl_ms: int) -> dict[str, Any]:
        """Decide reservations of several accounts: one reserve_many.lua call per account, all of
        them in one pipeline (one round trip; per node in a cluster). Each call is atomic for its account.

        groups: account -> items {meter, amount, idem_key, request_hash, hold_id, hold_expires_ms,
        dedup_key, dedup_window_ms}. Returns account -> one answer per item, or {e: ...} for the account.
        """
        accounts = list(groups)
        calls = []
        for account_id in accounts:
            keys = self.keys.account(account_id)
            args: list[Any] = [now_ms, mode, pending_deadline_ms, idem_ttl_ms]
            for it in groups[account_id]:
                keys.append(self.keys.idempotency(account_id, it["idem_key"] or "-"))
                keys.append(self.keys.dedup(account_id, it["meter"], it["dedup_key"] or "-"))
                args.extend([it["meter"], it["amount"], it["request_hash"], it["hold_id"],
                             it["hold_expires_ms"], it["dedup_window_ms"] if it["dedup_key"] else 0,
                             it.get("feature", ""), json.dumps(it.get("attributes") or {})])
            calls.append((keys, args))
        with telemetry.client_span("redis", "reserve_many"):
            raws = await self._many("reserve_many", calls)
        return {a: json.loads(r) for a, r in zip(accounts, raws, strict=True)}

    async def resolve(self, account_id: str, *, now_ms: int, op: str, hold_id: str, actual: int,
                      idem_key: str, request_hash: str, pending_deadline_ms: int,
                      idem_ttl_ms: int) -> dict[str, Any]:
        keys = self.keys.account(account_id)
        keys.append(self.keys.idempotency(account_id, idem_key))
        raw = await self._run("resolve", keys, [now_ms, op, hold_id, actual, request_hash,
                                                pending_deadline_ms, idem_ttl_ms])
        return json.loads(raw)  # type: ignore[no-any-return]

    async def load(self, account_id: str, epoch: int, snapshot: dict[str, Any]) -> bool:
        """Install a snapshot unless Redis already holds this epoch or a newer one."""
        res = await self._run("load", self.keys.account(account_id), [epoch, json.dumps(snapshot)])
        return res == "LOADED"  # type: ignore[no-any-return]

    async def balance(self, account_id: str, now_ms: int) -> dict[str, Any]:
        raw = await self._run("balance", self.keys.account(account_id), [now_ms])
        return json.loads(raw)  # type: ignore[no-any-return]

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
