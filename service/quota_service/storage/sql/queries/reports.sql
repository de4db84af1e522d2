-- Named queries of the reports (reports/usage.py, reports/accounts.py). A block starts with a line
-- "-- name: <name>". Indexes: migrations 004_usage_reports.sql and 005_account_reports.sql.
--
-- Usage (R2, R3, QA4, QC8, QC9). A charge is a `consume` row, or a `commit` row (the resolution of a
-- reservation), that moved `d_used`: one row per grant the charge was taken from, a wallet's row
-- ("$IDR") holding the overage in minor units. `reserve` rows only hold; `release` and `expire` rows
-- return holds. A commit row carries no attributes of its own: they are those of its reservation, the
-- row its `reverses_entry_id` points at.
--
-- Accounts (R4, R5, R6, KB5). Times are bigint milliseconds; a ledger time is compared as
-- `to_timestamp(ms / 1000.0)`, the expression every ledger writer stamps rows with, so a row stamped
-- at t compares equal to t. A transaction is any row that names a bucket and is not a usage row
-- (reserve, commit, release, consume, expire): whatever non-usage kind exists now or is added later.
-- That predicate is spelled exactly as in the partial index of migration 005, so the planner can use
-- that index.

-- name: usage_account
-- The account's time zone, its subscription's product (NULL: none) and the meters it has a grant or
-- a policy for (the trend's zero series).
SELECT a.time_zone, s.product,
       ARRAY(SELECT jsonb_object_keys(CASE jsonb_typeof(a.policies) WHEN 'object' THEN a.policies
                                      ELSE '{}'::jsonb END)
             UNION
             SELECT g.bucket FROM grants g
              WHERE g.account_id = a.account_id AND left(g.bucket, 1) <> '$') AS meters
  FROM accounts a
  LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.account_id = $1

-- name: usage_rows
-- Usage rows, newest first by (occurred_at, entry_id), strictly older than the position ($6, $7).
-- $1 account, $2 from (inclusive), $3 to (exclusive), $4 meter ('' = any), $5 attributes the row's
-- must contain (NULL = any), $6/$7 position (the first page passes $3 and 0), $8 limit (NULL = all).
-- running_used is the grant's cumulative d_used up to and including the row, in entry order: one
-- window pass over the history of each grant the rows touch (index ledger_used_by_grant), not one
-- sum per row. Rows of the last page of a long-lived grant cost a scan of its history up to them.
WITH picked AS MATERIALIZED (
    SELECT l.entry_id, l.occurred_at, l.meter, l.bucket, l.grant_id, l.kind, l.d_used,
           l.idempotency_key, COALESCE(NULLIF(l.attrs, 'null'::jsonb), r.attrs) AS attrs
      FROM ledger l
      LEFT JOIN ledger r ON l.kind = 'commit' AND r.entry_id = l.reverses_entry_id
     WHERE l.account_id = $1
       AND l.kind IN ('consume', 'commit') AND l.d_used <> 0
       AND l.occurred_at >= $2 AND l.occurred_at < $3
       AND (l.occurred_at, l.entry_id) < ($6::timestamptz, $7::bigint)
       AND ($4::text = '' OR l.meter = $4::text)
       AND ($5::jsonb IS NULL OR COALESCE(NULLIF(l.attrs, 'null'::jsonb), r.attrs) @> $5::jsonb)
     ORDER BY l.occurred_at DESC, l.entry_id DESC
     LIMIT $8::bigint
), running AS (
    -- LATERAL and OFFSET 0 (not pulled up into a join): one index range per grant, whatever the
    -- planner guesses about how many rows each grant has
    SELECT y.entry_id,
           sum(y.d_used) OVER (PARTITION BY g.grant_id ORDER BY y.entry_id)::bigint AS running_used
      FROM (SELECT p.grant_id, max(p.entry_id) AS last_id FROM picked p GROUP BY p.grant_id) g
     CROSS JOIN LATERAL (SELECT x.entry_id, x.d_used FROM ledger x
                          WHERE x.grant_id = g.grant_id AND x.d_used <> 0 AND x.entry_id <= g.last_id
                         OFFSET 0) y
)
SELECT p.entry_id, p.occurred_at, p.meter, p.bucket, p.grant_id, p.kind, p.d_used, p.idempotency_key,
       p.attrs, ru.running_used
  FROM picked p
  JOIN running ru ON ru.entry_id = p.entry_id
 ORDER BY p.occurred_at DESC, p.entry_id DESC

-- name: usage_trend
-- Units and charges per meter, group and bucket. One charge (all rows of one operation, which share
-- its idempotency key) counts once, with the units it charged (the ledger's `amount`: units from
-- grants and units paid as overage alike; a wallet's minor units are never added to units).
-- $1 account, $2 from, $3 to, $4 meter ('' = any), $5 attribute to group by ('' = none),
-- $6 the buckets' starts, ascending ($6[1] = $2): width_bucket gives the 1-based bucket.
SELECT c.meter, c.grp, width_bucket(c.occurred_at, $6::timestamptz[]) AS b,
       sum(c.amount)::bigint AS amount, count(*) AS events
  FROM (SELECT min(l.meter) AS meter, min(l.amount) AS amount, min(l.occurred_at) AS occurred_at,
               CASE WHEN $5::text = '' THEN ''
                    ELSE COALESCE(min(COALESCE(NULLIF(l.attrs, 'null'::jsonb), r.attrs) ->> $5::text), '')
               END AS grp
          FROM ledger l
          LEFT JOIN ledger r ON l.kind = 'commit' AND r.entry_id = l.reverses_entry_id
         WHERE l.account_id = $1
           AND l.kind IN ('consume', 'commit') AND l.d_used <> 0
           AND l.occurred_at >= $2 AND l.occurred_at < $3
           AND ($4::text = '' OR l.meter = $4::text)
         GROUP BY COALESCE(l.idempotency_key, l.entry_id::text)) c
 GROUP BY 1, 2, 3

-- name: report_account
SELECT account_id, status, time_zone, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms
  FROM accounts WHERE account_id = $1

-- name: report_status_at
-- the status an account had at $2: its latest status row (accounts start active)
SELECT attrs->>'status' FROM ledger
 WHERE account_id = $1 AND kind NOT IN ('reserve', 'commit', 'release', 'consume', 'expire') AND kind = 'status'
   AND occurred_at <= to_timestamp($2::bigint / 1000.0)
 ORDER BY occurred_at DESC, entry_id DESC LIMIT 1

-- name: report_grants
-- every grant of the account with the time of its first ledger row (when it came to exist)
SELECT g.grant_id, g.bucket, g.source, g.label, g.priority, g.starts_at_ms, g.expires_at_ms, g.overdraft_limit,
       (SELECT (extract(epoch FROM min(l.occurred_at)) * 1000)::bigint FROM ledger l
         WHERE l.account_id = g.account_id AND l.grant_id = g.grant_id) AS created_ms
  FROM grants g WHERE g.account_id = $1

-- Per-grant (granted, used, held) over the rows up to the cut $2, two ways that agree (the
-- projection is the sum of its rows): summing the rows before the cut (forward), or taking the rows
-- after it off the projection (backward). Each reads the fewer rows when the cut is nearer its end of
-- the account's history. Inclusive: the rows stamped at the cut count; exclusive: they do not.

-- name: report_states_forward_incl
SELECT grant_id, sum(d_granted)::bigint AS granted, sum(d_used)::bigint AS used, sum(d_held)::bigint AS held
  FROM ledger
 WHERE account_id = $1 AND grant_id IS NOT NULL AND occurred_at <= to_timestamp($2::bigint / 1000.0)
 GROUP BY grant_id

-- name: report_states_forward_excl
SELECT grant_id, sum(d_granted)::bigint AS granted, sum(d_used)::bigint AS used, sum(d_held)::bigint AS held
  FROM ledger
 WHERE account_id = $1 AND grant_id IS NOT NULL AND occurred_at < to_timestamp($2::bigint / 1000.0)
 GROUP BY grant_id

-- name: report_states_backward_incl
SELECT g.grant_id, g.granted - COALESCE(sum(l.d_granted), 0)::bigint AS granted,
       g.used - COALESCE(sum(l.d_used), 0)::bigint AS used, g.held - COALESCE(sum(l.d_held), 0)::bigint AS held
  FROM grants g
  LEFT JOIN ledger l ON l.account_id = g.account_id AND l.grant_id = g.grant_id
                    AND l.occurred_at > to_timestamp($2::bigint / 1000.0)
 WHERE g.account_id = $1
 GROUP BY g.grant_id, g.granted, g.used, g.held

-- name: report_states_backward_excl
SELECT g.grant_id, g.granted - COALESCE(sum(l.d_granted), 0)::bigint AS granted,
       g.used - COALESCE(sum(l.d_used), 0)::bigint AS used, g.held - COALESCE(sum(l.d_held), 0)::bigint AS held
  FROM grants g
  LEFT JOIN ledger l ON l.account_id = g.account_id AND l.grant_id = g.grant_id
                    AND l.occurred_at >= to_timestamp($2::bigint / 1000.0)
 WHERE g.account_id = $1
 GROUP BY g.grant_id, g.granted, g.used, g.held

-- Holds past their time that the sweeper has not returned yet: their 'expire' rows will be stamped at
-- expires_at_ms, so a report counts them as returned already (the answer does not depend on when the
-- sweeper runs). Inclusive: holds due at $2 too.

-- name: report_due_holds_incl
SELECT hold_id, rows, expires_at_ms FROM holds
 WHERE account_id = $1 AND status = 'open' AND expires_at_ms <= $2

-- name: report_due_holds_excl
SELECT hold_id, rows, expires_at_ms FROM holds
 WHERE account_id = $1 AND status = 'open' AND expires_at_ms < $2

-- name: report_transactions_page
-- Transactions, newest first: the non-usage rows naming a bucket, and the money a charge took from a
-- wallet (overage) listed as a 'charge' beside them, labelled later by the plan's overage label (TA8:
-- "AI"); the units themselves are usage, never listed. $2 from (inclusive), $3 to (exclusive), $4 kinds
-- (empty: all), $5/$6 the page position (NULL: the first page), $7 the limit.
SELECT * FROM (
  (SELECT l.entry_id, (extract(epoch FROM l.occurred_at) * 1000)::bigint AS at_ms, l.kind,
          COALESCE(l.grant_id, '') AS grant_id, l.bucket, l.d_granted, l.d_used, COALESCE(l.amount, 0) AS amount,
          COALESCE(g.source, '') AS source, COALESCE(g.label, '') AS label,
          COALESCE(l.idempotency_key, '') AS idempotency_key, COALESCE(l.meter, '') AS meter
     FROM ledger l
     LEFT JOIN grants g ON g.grant_id = l.grant_id AND g.account_id = l.account_id
    WHERE l.account_id = $1 AND l.kind NOT IN ('reserve', 'commit', 'release', 'consume', 'expire') AND l.bucket <> ''
      AND l.occurred_at >= to_timestamp($2::bigint / 1000.0) AND l.occurred_at < to_timestamp($3::bigint / 1000.0)
      AND (cardinality($4::text[]) = 0 OR l.kind = ANY($4::text[]))
      AND ($5::bigint IS NULL OR (l.occurred_at, l.entry_id) < (to_timestamp($5::bigint / 1000.0), $6::bigint))
    ORDER BY l.occurred_at DESC, l.entry_id DESC
    LIMIT $7)
  UNION ALL
  (SELECT l.entry_id, (extract(epoch FROM l.occurred_at) * 1000)::bigint AS at_ms, 'charge' AS kind,
          COALESCE(l.grant_id, '') AS grant_id, l.bucket, 0::bigint AS d_granted, l.d_used,
          COALESCE(l.amount, 0) AS amount, COALESCE(g.source, '') AS source, '' AS label,
          COALESCE(l.idempotency_key, '') AS idempotency_key, COALESCE(l.meter, '') AS meter
     FROM ledger l
     LEFT JOIN grants g ON g.grant_id = l.grant_id AND g.account_id = l.account_id
    WHERE l.account_id = $1 AND l.kind IN ('consume', 'commit') AND l.d_used <> 0 AND left(l.bucket, 1) = '$'
      AND l.occurred_at >= to_timestamp($2::bigint / 1000.0) AND l.occurred_at < to_timestamp($3::bigint / 1000.0)
      AND (cardinality($4::text[]) = 0 OR 'charge' = ANY($4::text[]))
      AND ($5::bigint IS NULL OR (l.occurred_at, l.entry_id) < (to_timestamp($5::bigint / 1000.0), $6::bigint))
    ORDER BY l.occurred_at DESC, l.entry_id DESC
    LIMIT $7)
) t
 ORDER BY at_ms DESC, entry_id DESC
 LIMIT $7

-- name: report_plan_of
-- the account's plan, for the overage labels of its transactions: meter -> label (TA8)
SELECT product, plan FROM subscriptions WHERE account_id = $1

-- name: report_transactions_between
-- the transactions stamped in [$2, $3] (both ends: the caller sorts out the boundary rows)
SELECT l.entry_id, (extract(epoch FROM l.occurred_at) * 1000)::bigint AS at_ms, l.kind,
       COALESCE(l.grant_id, '') AS grant_id, l.bucket, l.d_granted, l.d_used, COALESCE(l.amount, 0) AS amount,
       COALESCE(g.source, '') AS source, COALESCE(g.label, '') AS label,
       COALESCE(l.idempotency_key, '') AS idempotency_key, COALESCE(l.meter, '') AS meter
  FROM ledger l
  LEFT JOIN grants g ON g.grant_id = l.grant_id AND g.account_id = l.account_id
 WHERE l.account_id = $1 AND l.kind NOT IN ('reserve', 'commit', 'release', 'consume', 'expire') AND l.bucket <> ''
   AND l.occurred_at >= to_timestamp($2::bigint / 1000.0) AND l.occurred_at <= to_timestamp($3::bigint / 1000.0)
 ORDER BY l.occurred_at, l.entry_id

-- name: report_window_flows
-- every row stamped in [$2, $3], summed per grant, kind and boundary position
SELECT COALESCE(grant_id, '') AS grant_id, COALESCE(bucket, '') AS bucket, kind,
       occurred_at = to_timestamp($2::bigint / 1000.0) AS at_start,
       occurred_at = to_timestamp($3::bigint / 1000.0) AS at_end,
       COALESCE(kind = 'carry_over' AND attrs->>'from_grant' = grant_id, false) AS carry_out,
       sum(d_granted)::bigint AS d_granted, sum(d_used)::bigint AS d_used, sum(d_held)::bigint AS d_held,
       COALESCE(sum(amount), 0)::bigint AS amount
  FROM ledger
 WHERE account_id = $1
   AND occurred_at >= to_timestamp($2::bigint / 1000.0) AND occurred_at <= to_timestamp($3::bigint / 1000.0)
 GROUP BY 1, 2, 3, 4, 5, 6

-- name: report_overage
-- Charges in [$2, $3) that drew money from a wallet for a meter (overage, H6), one row per charge.
-- Every row of one charge carries the charge's units (`amount`: the request, or a commit's actual);
-- the units beyond the grants are that minus what the meter's own grants gave.
SELECT meter, max(bucket) FILTER (WHERE left(bucket, 1) = '$') AS wallet, max(amount) AS units,
       COALESCE(sum(d_used) FILTER (WHERE bucket = meter), 0)::bigint AS from_grants,
       COALESCE(sum(d_used) FILTER (WHERE left(bucket, 1) = '$'), 0)::bigint AS minor
  FROM ledger
 WHERE account_id = $1 AND kind IN ('consume', 'commit') AND meter <> ''
   AND occurred_at >= to_timestamp($2::bigint / 1000.0) AND occurred_at < to_timestamp($3::bigint / 1000.0)
 GROUP BY kind, idempotency_key, meter
HAVING COALESCE(sum(d_used) FILTER (WHERE left(bucket, 1) = '$'), 0) <> 0

-- name: report_subscription
SELECT s.product, s.plan, s.interval, s.anchor_at_ms, s.cycle_no, s.cycle_start_ms, s.cycle_end_ms,
       a.time_zone
  FROM subscriptions s JOIN accounts a USING (account_id)
 WHERE s.account_id = $1

-- name: report_has_cycle_table
-- Past cycles' bounds and plans, where the service keeps them (a table added with plan changes: a
-- re-anchored subscription's past cycles cannot be computed from its current anchor).
SELECT to_regclass('subscription_cycles') IS NOT NULL

-- name: report_recorded_cycle
SELECT product, plan, cycle_start_ms, cycle_end_ms FROM subscription_cycles
 WHERE account_id = $1 AND cycle_no = $2

-- name: report_org_accounts
-- $2: the last account of the previous page (NULL: the first page)
SELECT a.account_id, a.org_id, a.owner_id, a.status, COALESCE(s.product, '') AS product,
       COALESCE(s.plan, '') AS plan, COALESCE(s.interval, '') AS interval,
       COALESCE(s.cycle_end_ms, 0) AS cycle_end_ms, s.pending, a.policies
  FROM accounts a
  LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.org_id = $1 AND ($2::text IS NULL OR a.account_id > $2::text)
 ORDER BY a.account_id
 LIMIT $3

-- name: report_live_grants
-- the projection of the grants live at $2 (started, not expired), of several accounts
SELECT account_id, grant_id, bucket, source, label, priority, starts_at_ms, expires_at_ms, granted, used, held,
       overdraft_limit
  FROM grants
 WHERE account_id = ANY($1::text[]) AND starts_at_ms <= $2 AND (expires_at_ms = 0 OR expires_at_ms > $2)

-- name: report_due_holds_of
SELECT account_id, rows FROM holds
 WHERE account_id = ANY($1::text[]) AND status = 'open' AND expires_at_ms <= $2

-- name: report_cycle_at
-- the subscription cycle in force at $2 (subscription_cycles keeps every cycle with its bounds)
SELECT cycle_start_ms, cycle_end_ms, product, plan FROM subscription_cycles
 WHERE account_id = $1 AND cycle_start_ms <= $2 AND cycle_end_ms > $2
 ORDER BY cycle_no DESC LIMIT 1

-- name: report_known_buckets
-- the meters and wallets of several accounts, as their balances list them (R1, FB8): every bucket
-- with a grant, live or ended, and every meter with a policy
SELECT account_id, bucket FROM grants WHERE account_id = ANY($1::text[])
 UNION
SELECT a.account_id, m FROM accounts a, jsonb_object_keys(coalesce(a.policies, '{}')) AS m
 WHERE a.account_id = ANY($1::text[])

-- name: report_policy_meters
-- the meters the account has a policy for now, and its subscription's product and plan now: a
-- balance lists those meters, zeros included (R1, FB8)
SELECT (SELECT coalesce(array_agg(m ORDER BY m), '{}') FROM accounts, jsonb_object_keys(coalesce(policies, '{}')) AS m
         WHERE account_id = $1) AS meters,
       s.product, s.plan
  FROM (SELECT 1) AS one LEFT JOIN subscriptions s ON s.account_id = $1
