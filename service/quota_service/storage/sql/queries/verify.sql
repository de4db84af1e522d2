-- Consistency check (N4, verify.py): the ledger's sums per grant against the projection, in pages of accounts.

-- name: verify_account_exists
SELECT 1 FROM accounts WHERE account_id = $1;

-- name: verify_accounts_after
SELECT account_id FROM accounts WHERE account_id > $1 ORDER BY account_id LIMIT $2;

-- name: verify_epochs
SELECT account_id, epoch FROM accounts WHERE account_id = ANY($1::text[]);

-- name: verify_grants
SELECT account_id, grant_id, bucket, priority, expires_at_ms, granted, used, held, overdraft_limit
  FROM grants WHERE account_id = ANY($1::text[]);

-- name: verify_ledger_sums
SELECT account_id, grant_id, sum(d_granted)::bigint AS granted, sum(d_used)::bigint AS used,
       sum(d_held)::bigint AS held
  FROM ledger WHERE account_id = ANY($1::text[]) AND grant_id IS NOT NULL
 GROUP BY account_id, grant_id;

-- name: verify_open_holds
SELECT h.account_id, h.hold_id, h.expires_at_ms, r->>'g' AS grant_id, (r->>'a')::bigint AS amount
  FROM holds h, jsonb_array_elements(h.rows) AS r
 WHERE h.account_id = ANY($1::text[]) AND h.status = 'open';
