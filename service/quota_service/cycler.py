"""Ends billing cycles at their boundary, even when nobody calls (QC1, FB5, QA3b, QA3c, TA1).

Every replica runs one, like the hold sweeper. A pass finds the subscriptions whose cycle has
ended and rolls each over one cycle at a time (subscriptions.roll_cycle: one transaction per cycle,
``FOR UPDATE SKIP LOCKED`` on the subscription so replicas share the work, the account row held
and its epoch bumped so concurrent reservations are fenced). Cycles missed while the service was
down are caught up one by one, each stamped at its own boundary. The account's Redis state is then
rebuilt.
"""

from __future__ import annotations

import contextlib
import logging

from quota_service.catalogue import CatalogueSet
from quota_service.domain.clock import Clock
from quota_service.errors import NotFound, StorageError
from quota_service.hotpath import Rebuilder
from quota_service.periodic import Periodic
from quota_service.storage.postgres import PostgresLedger, Q
from quota_service.subscriptions import CycleError, roll_cycle

log = logging.getLogger(__name__)
MAX_CATCH_UP = 1_000  # cycles rolled for one account in one pass (a pass resumes where it stopped)


class Cycler(Periodic):
    name = "cycler"

    def __init__(self, ledger: PostgresLedger, rebuilder: Rebuilder, clock: Clock,
                 catalogues: CatalogueSet | None, interval_s: float, batch: int = 100) -> None:
        self.ledger = ledger
        self.rebuilder = rebuilder
        self.clock = clock
        self.catalogues = catalogues
        super().__init__(interval_s)
        self.batch = batch
        self.cycles_ended = 0

    async def run_once(self) -> list[str]:
        """One pass: roll over every subscription whose cycle ended by now; the accounts touched."""
        now = self.clock.now_ms()
        due = await self.ledger._call(lambda c: c.fetch(Q["due_subscriptions"], now, self.batch))
        touched = []
        for r in due:
            account_id = r["account_id"]
            rolled = 0
            try:
                while rolled < MAX_CATCH_UP:
                    cycle = await self._roll(account_id, now)
                    if cycle is None:
                        break
                    rolled += 1
                    log.info("cycle ended", extra={"account_id": account_id, "cycle": cycle})
            except CycleError as exc:
                log.warning("cycle end skipped: %s", exc)
            if rolled:
                self.cycles_ended += rolled
                touched.append(account_id)
                with contextlib.suppress(StorageError, NotFound):
                    await self.rebuilder.rebuild(account_id)  # the epoch moved: Redis must see the new cycle
        return touched

    async def roll_account(self, account_id: str) -> bool:
        """Roll over one account's ended cycles now (a request found its cycle over before this task's
        pass); whether any was rolled. A cycle another replica is rolling is left to it."""
        now = self.clock.now_ms()
        rolled = 0
        try:
            while rolled < MAX_CATCH_UP and await self._roll(account_id, now) is not None:
                rolled += 1
        except CycleError as exc:
            log.warning("cycle end skipped: %s", exc)
        if rolled:
            self.cycles_ended += rolled
            await self.rebuilder.rebuild(account_id)
        return rolled > 0

    async def next_delay_s(self) -> float:
        """Wake at the next cycle end, so a new cycle starts within a transaction's time of its boundary."""
        nxt = await self.ledger._call(lambda c: c.fetchval(Q["next_cycle_end"]))
        if nxt is None:
            return self.interval_s
        return max(0.0, (int(nxt) - self.clock.now_ms()) / 1000)

    async def _roll(self, account_id: str, now_ms: int) -> int | None:
        return await self.ledger._call(lambda c: roll_cycle(c, account_id, now_ms, self.catalogues))
