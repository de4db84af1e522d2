-- Named queries of subscriptions and their cycle ends (app/subscriptions.py, app/billing_cycle.py).

-- name: cycle_end_grants
-- the ending cycle's grants in ledger order, with the floor an adjustment opened for a debt (it
-- follows a carried debt)
SELECT grant_id, bucket, source, label, priority, starts_at_ms, expires_at_ms, granted, used, held,
       overdraft_limit, item, cycle_no, carries, debt_overdraft
  FROM grants WHERE account_id = $1 AND cycle_no = $2 AND item IS NOT NULL
 ORDER BY ord;

-- name: capacity_grants
-- the account's capacity grants ($2: their ids), read before a plan sets its capacity (QC2)
SELECT grant_id, bucket, granted, used, held FROM grants WHERE account_id = $1 AND grant_id = ANY($2::text[]);

-- name: has_subscription
SELECT 1 FROM subscriptions WHERE account_id = $1;

-- name: cycle_item_counts
-- grants of each catalogue item in one cycle (a pack added mid-cycle gets the next number)
SELECT item, count(*) AS n FROM grants WHERE account_id = $1 AND cycle_no = $2 AND item IS NOT NULL
 GROUP BY item;

-- name: live_item_grants
-- the grants of the items $2 still counting at $3 (one-time grants a pack purchase forfeits, FB3)
SELECT grant_id, bucket, granted, used, held, item FROM grants
 WHERE account_id = $1 AND item = ANY($2::text[]) AND (expires_at_ms = 0 OR expires_at_ms > $3)
 ORDER BY ord;

-- name: set_packs
UPDATE subscriptions SET packs = $2 WHERE account_id = $1;

-- name: extend_cycle_grants
-- KB5: the cycle's grants that expired with its old end ($3) expire with the new one ($4)
UPDATE grants SET expires_at_ms = $4
 WHERE account_id = $1 AND cycle_no = $2 AND item IS NOT NULL AND expires_at_ms = $3;

-- name: extend_cycle
-- KB5: the cycle ends at $2 and the next cycles count from there ($3: the next cycle's number)
UPDATE subscriptions SET cycle_end_ms = $2, anchor_at_ms = $2, anchor_cycle_no = $3 WHERE account_id = $1;

-- name: balance_context
-- what a live balance shows beside Redis's numbers: the account's time zone and its current cycle
SELECT a.time_zone, coalesce(s.cycle_start_ms, 0) AS cycle_start_ms, coalesce(s.cycle_end_ms, 0) AS cycle_end_ms
  FROM accounts a LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.account_id = $1;
