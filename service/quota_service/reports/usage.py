"""Usage rows (R2, QA4), the CSV export (R3, QA4, QC9) and trends (R3, QC8), from the ledger."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quota.v1 import quota_pb2 as pb

from quota_service.catalogue import CatalogueSet
from quota_service.domain.clock import Clock
from quota_service.storage.postgres import PostgresLedger


class UsageReports:
    def __init__(self, ledger: PostgresLedger, clock: Clock, catalogues: CatalogueSet | None) -> None:
        self.ledger = ledger
        self.clock = clock
        self.catalogues = catalogues

    async def page(self, req: pb.ListUsageRequest) -> pb.UsagePage:
        raise NotImplementedError

    async def export(self, req: pb.ExportUsageRequest) -> AsyncIterator[pb.ExportChunk]:
        raise NotImplementedError
        yield pb.ExportChunk()

    async def trend(self, req: pb.GetTrendRequest) -> pb.Trend:
        raise NotImplementedError
