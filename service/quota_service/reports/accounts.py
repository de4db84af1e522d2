"""Balance as of a past time (R6), transactions (R4), statements per cycle (R5) and the
organization's account overview (KB5), from the ledger."""

from __future__ import annotations

from quota.v1 import quota_pb2 as pb

from quota_service.catalogue import CatalogueSet
from quota_service.domain.clock import Clock
from quota_service.storage.postgres import PostgresLedger


class AccountReports:
    def __init__(self, ledger: PostgresLedger, clock: Clock, catalogues: CatalogueSet | None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.catalogues = catalogues

    async def balance_as_of(self, account_id: str, meter: str, as_of_ms: int) -> pb.Balance:
        raise NotImplementedError

    async def transactions(self, req: pb.ListTransactionsRequest) -> pb.TransactionPage:
        raise NotImplementedError

    async def statement(self, req: pb.GetStatementRequest) -> pb.Statement:
        raise NotImplementedError

    async def accounts(self, req: pb.ListAccountsRequest) -> pb.AccountPage:
        raise NotImplementedError
