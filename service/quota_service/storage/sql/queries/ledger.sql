-- Named queries of the Postgres adapter. A block starts with a line "-- name: <name>".

-- name: apply_batch
SELECT idx, status, request_hash, response FROM quota_apply($1::jsonb);

-- name: bump_epoch
UPDATE accounts SET epoch = epoch + 1 WHERE account_id = $1 RETURNING epoch, status, policies;

-- name: expire_account_holds
SELECT quota_expire_holds($1, $2);

-- name: snapshot_grants
SELECT grant_id, bucket, source, label, priority, ord, starts_at_ms, expires_at_ms, granted, used,
       held, overdraft_limit
  FROM grants
 WHERE account_id = $1 AND (expires_at_ms = 0 OR expires_at_ms > $2 OR held <> 0);

-- name: snapshot_buckets
SELECT DISTINCT bucket FROM grants WHERE account_id = $1;

-- name: snapshot_holds
-- a hold's dedup key counts only while the mark still belongs to it
SELECT h.hold_id, h.meter, h.amount, h.overage_units, h.price_minor, h.rows, d.dedup_key, d.window_end_ms,
       h.expires_at_ms
  FROM holds h
  LEFT JOIN dedup_marks d ON d.account_id = h.account_id AND d.hold_id = h.hold_id
 WHERE h.account_id = $1 AND h.status = 'open';

-- name: snapshot_dedup
SELECT meter, dedup_key, window_end_ms FROM dedup_marks WHERE account_id = $1 AND window_end_ms > $2;

-- name: snapshot_cycle_end
SELECT cycle_end_ms FROM subscriptions WHERE account_id = $1 AND status = 'active';

-- name: hold_status
SELECT status FROM holds WHERE account_id = $1 AND hold_id = $2;

-- name: operation
SELECT kind, request_hash, response FROM operations WHERE account_id = $1 AND idempotency_key = $2;

-- name: insert_operation
INSERT INTO operations (account_id, idempotency_key, kind, request_hash, response, created_at)
VALUES ($1, $2, $3, $4, $5, to_timestamp($6 / 1000.0))
ON CONFLICT DO NOTHING;

-- name: insert_account
INSERT INTO accounts (account_id, org_id, time_zone, policies, created_at)
VALUES ($1, NULLIF($2, ''), $3, $4, to_timestamp($5 / 1000.0))
ON CONFLICT DO NOTHING;

-- name: get_account
SELECT account_id, COALESCE(org_id, '') AS org_id, time_zone, status, policies, owner_id, billing_emails,
       language
  FROM accounts WHERE account_id = $1;

-- name: set_owner
UPDATE accounts SET owner_id = $2 WHERE account_id = $1;

-- name: set_status
UPDATE accounts SET status = $2 WHERE account_id = $1 RETURNING account_id;

-- name: insert_grant
INSERT INTO grants (grant_id, account_id, bucket, source, label, priority, starts_at_ms, expires_at_ms,
                    granted, overdraft_limit)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT DO NOTHING;

-- name: bucket_total
SELECT COALESCE(sum(granted + overdraft_limit), 0) FROM grants WHERE account_id = $1 AND bucket = $2;

-- name: get_grant
SELECT grant_id, bucket, source, label, priority, starts_at_ms, expires_at_ms, granted, used, held,
       overdraft_limit
  FROM grants WHERE grant_id = $1 AND account_id = $2;

-- name: insert_admin_entry
INSERT INTO ledger (account_id, kind, grant_id, bucket, d_granted, idempotency_key, amount, occurred_at, attrs)
VALUES ($1, $2, $3, $4, $5, $6, $5, to_timestamp($7 / 1000.0), $8);

-- name: lock_account_nowait
SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE SKIP LOCKED;

-- name: due_hold_accounts
SELECT DISTINCT account_id FROM holds WHERE status = 'open' AND expires_at_ms <= $1 LIMIT $2;

-- name: lock_account
SELECT time_zone, policies FROM accounts WHERE account_id = $1 FOR UPDATE;

-- name: get_subscription
SELECT account_id, product, plan, interval, catalogue_version, catalogue_hash, packs, anchor_at_ms,
       cycle_no, cycle_start_ms, cycle_end_ms, status, withheld, pending, anchor_cycle_no
  FROM subscriptions WHERE account_id = $1;

-- name: lock_subscription
SELECT account_id, product, plan, interval, catalogue_version, catalogue_hash, packs, anchor_at_ms,
       cycle_no, cycle_start_ms, cycle_end_ms, status, withheld, pending, anchor_cycle_no
  FROM subscriptions WHERE account_id = $1 FOR UPDATE;

-- name: lock_due_subscription
-- SKIP LOCKED: a subscription another replica is rolling over is left to it
SELECT account_id, product, plan, interval, catalogue_version, catalogue_hash, packs, anchor_at_ms,
       cycle_no, cycle_start_ms, cycle_end_ms, status, withheld, pending, anchor_cycle_no
  FROM subscriptions
 WHERE account_id = $1 AND status = 'active' AND cycle_end_ms <= $2
   FOR UPDATE SKIP LOCKED;

-- name: due_subscriptions
SELECT account_id FROM subscriptions
 WHERE status = 'active' AND cycle_end_ms <= $1 ORDER BY cycle_end_ms LIMIT $2;

-- name: next_cycle_end
SELECT min(cycle_end_ms) FROM subscriptions WHERE status = 'active';

-- name: insert_subscription
INSERT INTO subscriptions (account_id, product, plan, interval, catalogue_version, catalogue_hash, packs,
                           anchor_at_ms, cycle_no, cycle_start_ms, cycle_end_ms, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $10, to_timestamp($11 / 1000.0))
ON CONFLICT DO NOTHING;

-- name: next_cycle
-- the new cycle, with the plan it is billed by (the same one, or a change applied now)
UPDATE subscriptions SET cycle_no = $2, cycle_start_ms = $3, cycle_end_ms = $4, withheld = $5,
                         catalogue_version = $6, catalogue_hash = $7, plan = $8, interval = $9, packs = $10,
                         anchor_at_ms = $11, anchor_cycle_no = $12, pending = NULL
 WHERE account_id = $1;

-- name: record_cycle
INSERT INTO subscription_cycles (account_id, cycle_no, product, plan, interval, packs, cycle_start_ms,
                                 cycle_end_ms, catalogue_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (account_id, cycle_no) DO UPDATE SET cycle_end_ms = EXCLUDED.cycle_end_ms;

-- name: cut_cycle
-- a change applied now ends the current cycle early: its record and its grants end now
UPDATE subscription_cycles SET cycle_end_ms = $3 WHERE account_id = $1 AND cycle_no = $2;

-- name: expire_cycle_grants
UPDATE grants SET expires_at_ms = $3
 WHERE account_id = $1 AND cycle_no = $2 AND item IS NOT NULL AND (expires_at_ms = 0 OR expires_at_ms > $3);

-- name: set_pending
UPDATE subscriptions SET pending = $2 WHERE account_id = $1;

-- name: set_withheld
UPDATE subscriptions SET withheld = $2 WHERE account_id = $1;

-- name: set_policies
UPDATE accounts SET policies = $2 WHERE account_id = $1;

-- name: cycle_grants
SELECT grant_id, bucket, source, label, priority, starts_at_ms, expires_at_ms, granted, used, held,
       overdraft_limit, item, cycle_no, carries
  FROM grants WHERE account_id = $1 AND cycle_no = $2 AND item IS NOT NULL
 ORDER BY ord;

-- name: insert_item_grant
INSERT INTO grants (grant_id, account_id, bucket, source, label, priority, starts_at_ms, expires_at_ms,
                    granted, used, overdraft_limit, item, cycle_no, carries)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING;

-- name: move_granted
UPDATE grants SET granted = granted + $3 WHERE grant_id = $1 AND account_id = $2;

-- name: lock_grant
SELECT bucket, granted, used, held, overdraft_limit FROM grants WHERE grant_id = $1 AND account_id = $2
   FOR UPDATE;

-- name: set_overdraft
UPDATE grants SET overdraft_limit = $3 WHERE grant_id = $1 AND account_id = $2;

-- name: count_item_grants
-- grants of one catalogue item in one cycle (packs added mid-cycle, automatic top-ups)
SELECT count(*) FROM grants WHERE account_id = $1 AND item = $2 AND cycle_no = $3;

-- name: move_used
UPDATE grants SET used = used + $3 WHERE grant_id = $1 AND account_id = $2;

-- name: insert_entry
-- a ledger entry written outside the hot path (cycle ends, settlements), stamped at $9
INSERT INTO ledger (account_id, kind, grant_id, bucket, d_granted, d_used, idempotency_key, amount,
                    occurred_at, attrs)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, to_timestamp($9 / 1000.0), $10);

-- Debts and top-up kinds (QC7, QA3c, QC13): a top-up first pays what its balance owes.

-- name: floor_follows_debt
-- the grant's floor after its debt changed: its own overdraft, or the debt when that is deeper
-- (right-hand sides read the row as it was)
UPDATE grants
   SET overdraft_limit = GREATEST(overdraft_limit - debt_overdraft, used + held - granted),
       debt_overdraft = GREATEST(0, used + held - granted - (overdraft_limit - debt_overdraft))
 WHERE grant_id = $1 AND account_id = $2;

-- name: lock_live_bucket_grants
SELECT grant_id, granted, used, held, item, starts_at_ms FROM grants
 WHERE account_id = $1 AND bucket = $2 AND starts_at_ms <= $3 AND (expires_at_ms = 0 OR expires_at_ms > $3)
 ORDER BY ord FOR UPDATE;

-- name: set_debt_overdraft
UPDATE grants SET debt_overdraft = $3 WHERE grant_id = $1 AND account_id = $2;

-- name: make_secret
-- a deployment secret (service_secrets, migration 015): the first replica to make one wins
INSERT INTO service_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING;

-- name: secret
SELECT secret FROM service_secrets WHERE name = $1;

-- name: open_debt_floor
-- an adjustment took the grant below its floor: the floor opens to the debt ($3), and debt_overdraft
-- records the part that is only there for the debt
UPDATE grants SET debt_overdraft = debt_overdraft + ($3 - overdraft_limit), overdraft_limit = $3
 WHERE grant_id = $1 AND account_id = $2;

-- name: end_grant
UPDATE grants SET expires_at_ms = $3 WHERE grant_id = $1 AND account_id = $2;
