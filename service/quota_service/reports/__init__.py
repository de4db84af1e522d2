"""Reports read the Postgres ledger, the source of truth, never Redis, and answer plain values.

- `usage.py`: usage rows with cursor pagination (R2), the CSV export (R3), trends (R3, QC8).
- `accounts.py`: balance as of a past time (R6), transactions (R4), statements per cycle (R5),
  the organization's account overview (KB5); its arithmetic, pure, in `accounts_calc.py`.
- `model.py`: what the reports are asked and answer (api/translate.py turns them into messages).
- `cursor.py`: opaque page tokens.

Their SQL is in the named queries of storage/sql/queries/reports.sql.
"""

from quota_service.reports.accounts import AccountReports
from quota_service.reports.usage import UsageReports

__all__ = ["AccountReports", "UsageReports"]
