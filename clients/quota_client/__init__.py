"""Client of the quota service: `AsyncQuotaClient` for asyncio callers, `QuotaClient` for blocking ones."""

from quota_client.client import AsyncQuotaClient, QuotaClient, QuotaClientError, new_key
from quota_client.results import (
    Account,
    Alert,
    Balance,
    Decision,
    Grant,
    GrantPart,
    MeterBalance,
    MeterPolicy,
    PlanChange,
    Subscription,
)

__all__ = ["Account", "Alert", "AsyncQuotaClient", "Balance", "Decision", "Grant", "GrantPart", "MeterBalance",
           "MeterPolicy", "PlanChange", "QuotaClient", "QuotaClientError", "Subscription", "new_key"]
