-- Indexes of the usage reports (service/quota_service/reports/usage_sql.py).
--
-- Charges of one account by time, newest first: a usage page (R2, QA4) is one range scan from its
-- position, the export (R3, QC9) and the trend (QC8) one range scan of their period. Only charges
-- (consume, or the commit of a reservation, that moved d_used) are in it.
CREATE INDEX IF NOT EXISTS ledger_charges ON ledger (account_id, occurred_at DESC, entry_id DESC)
    WHERE kind IN ('consume', 'commit') AND d_used <> 0;

-- A grant's history of used units in entry order: the running usage of a row is the sum over this
-- index up to the row (an index-only scan per grant a page touches, not one per row). Rows that do
-- not move d_used (grants, reserves, releases, expiries) are left out.
CREATE INDEX IF NOT EXISTS ledger_used_by_grant ON ledger (grant_id, entry_id) INCLUDE (d_used)
    WHERE d_used <> 0;
