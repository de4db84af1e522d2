"""What the hot path needs of its collaborators, as small Protocols.

The adapters (storage.redis_store.RedisStore, storage.postgres.PostgresLedger,
storage.group_commit.GroupCommitter, app.rebuild.Rebuilder, domain.clock's clocks) implement them
as they are; unit tests pass pure-Python fakes. Every collaborator is passed to HotPath when it is
built and never replaced afterwards.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from quota_service.domain.clock import Clock
from quota_service.storage.postgres import ApplyResult
from quota_service.storage.redis_store import ReserveItem
from quota_service.storage.wire import Answer, BalanceAnswer

__all__ = ["AnswerLedger", "Clock", "Committer", "CounterStore", "Rebuilds", "StoredRow"]


class CounterStore(Protocol):
    """The account counters (Redis): each call is atomic per account. Times in ms since the epoch;
    a backend failure raises StorageError (the call may or may not have run)."""

    async def reserve_many(self, groups: dict[str, list[ReserveItem]], *, now_ms: int, mode: str,
                           pending_deadline_ms: int, idem_ttl_ms: int) -> dict[str, list[Answer] | Answer]:
        """Decide each account's items in order, in one round trip: one answer per item, or one
        error answer (NOT_LOADED, RELOAD) for the whole account."""
        ...

    async def resolve(self, account_id: str, *, now_ms: int, op: str, hold_id: str, actual: int,
                      idem_key: str, request_hash: str, pending_deadline_ms: int, idem_ttl_ms: int) -> Answer:
        """Commit (actual units used) or release a hold."""
        ...

    async def balance(self, account_id: str, now_ms: int) -> BalanceAnswer:
        """The account's grants after returning expired holds."""
        ...

    async def forget_answer(self, account_id: str, idempotency_key: str) -> None:
        """Drop the answer stored under a key (a denial not yet given to the caller)."""
        ...

    async def invalidate(self, account_id: str) -> None:
        """Drop the account's state: the next call rebuilds it from the ledger."""
        ...

    async def confirm(self, groups: dict[tuple[str, int], list[str]]) -> None:
        """Mark mutations durable: (account, epoch) -> idempotency keys the ledger committed."""
        ...


class StoredRow(Protocol):
    """A row of the ledger's operations: request_hash and response (the answer's JSON) by name."""

    def __getitem__(self, index: str) -> Any: ...


class AnswerLedger(Protocol):
    """What the hot path reads from the ledger itself (every write goes through the Committer)."""

    async def operation(self, account_id: str, key: str) -> StoredRow | None:
        """The answer the ledger recorded for an idempotency key, if any."""
        ...

    async def hold_status(self, account_id: str, hold_id: str) -> str | None:
        """open, committed, released, expired; None for an unknown hold."""
        ...


class Committer(Protocol):
    def enqueue(self, entry: dict[str, Any]) -> asyncio.Future[ApplyResult]:
        """Queue a ledger entry for a group commit; the future resolves when its batch is committed (or
        failed), whether or not anyone still waits for it. Raises Unavailable while shutting down."""
        ...


class Rebuilds(Protocol):
    async def rebuild(self, account_id: str, *, stale_epoch: int | None = None, lost: bool = False) -> None:
        """Load the account from the ledger under a new epoch, once at a time per account; nothing
        when stale_epoch is given and the state has already moved past it. NotFound for an unknown account."""
        ...
