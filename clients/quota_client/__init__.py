"""Client of the quota service: `AsyncQuotaClient` for asyncio callers, `QuotaClient` for blocking ones."""

from quota_client.client import AsyncQuotaClient, QuotaClient, QuotaClientError, new_key
from quota_client.results import (
    Account,
    AccountOverview,
    AccountPage,
    Alert,
    Balance,
    Decision,
    Grant,
    GrantPart,
    ItemResult,
    MeterBalance,
    MeterPolicy,
    PlanChange,
    ReserveItem,
    Statement,
    StatementLine,
    Subscription,
    Transaction,
    TransactionPage,
    Trend,
    TrendPoint,
    TrendSeries,
    UsagePage,
    UsageRow,
    VerifyDifference,
    VerifyReport,
)

__all__ = ["Account", "AccountOverview", "AccountPage", "Alert", "AsyncQuotaClient", "Balance", "Decision", "Grant",
           "GrantPart", "ItemResult", "MeterBalance", "MeterPolicy", "PlanChange", "QuotaClient", "QuotaClientError",
           "ReserveItem", "Statement",
           "StatementLine", "Subscription", "Transaction", "TransactionPage", "Trend", "TrendPoint", "TrendSeries",
           "UsagePage", "UsageRow", "VerifyDifference", "VerifyReport", "new_key"]
