-- Indexes of the account reports (reports/accounts.py), so their cost follows what they show, not
-- the size of the ledger (N5).

-- Transactions (R4): the non-usage rows of an account, newest first, without walking its usage rows.
-- The predicate is "not a usage kind", so kinds added later are indexed too; the queries spell it
-- the same way (reports/accounts_sql.py).
CREATE INDEX IF NOT EXISTS ledger_account_transactions ON ledger (account_id, occurred_at, entry_id)
    WHERE kind NOT IN ('reserve', 'commit', 'release', 'consume', 'expire');

-- Balance as of a time (R6) and statements (R5): one grant's rows, to find when it was created and
-- to take the rows after a time off the projection.
CREATE INDEX IF NOT EXISTS ledger_account_grant ON ledger (account_id, grant_id, occurred_at) WHERE grant_id IS NOT NULL;

-- Account overview (KB5): an organization's accounts in account order, page by page.
CREATE INDEX IF NOT EXISTS accounts_org_account ON accounts (org_id, account_id) WHERE org_id IS NOT NULL;
