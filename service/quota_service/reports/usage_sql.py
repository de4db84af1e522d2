"""SQL of the usage reports (R2, R3, QA4, QC8, QC9). Indexes: storage/sql/migrations/004_usage_reports.sql.

A charge is a ``consume`` row, or a ``commit`` row (the resolution of a reservation), that moved
``d_used``: one row per grant the charge was taken from, a wallet's row ("$IDR") holding the
overage in minor units. ``reserve`` rows only hold; ``release`` and ``expire`` rows return holds.
A commit row carries no attributes of its own: they are those of its reservation, the row its
``reverses_entry_id`` points at.
"""

from __future__ import annotations

# The account's time zone, its subscription's product (NULL: none) and the meters it has a grant or
# a policy for (the trend's zero series).
ACCOUNT = """
SELECT a.time_zone, s.product,
       ARRAY(SELECT jsonb_object_keys(CASE jsonb_typeof(a.policies) WHEN 'object' THEN a.policies
                                      ELSE '{}'::jsonb END)
             UNION
             SELECT g.bucket FROM grants g
              WHERE g.account_id = a.account_id AND left(g.bucket, 1) <> '$') AS meters
  FROM accounts a
  LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.account_id = $1
"""

# Usage rows, newest first by (occurred_at, entry_id), strictly older than the position ($6, $7).
# $1 account, $2 from (inclusive), $3 to (exclusive), $4 meter ('' = any), $5 attributes the row's
# must contain (NULL = any), $6/$7 position (the first page passes $3 and 0), $8 limit (NULL = all).
# running_used is the grant's cumulative d_used up to and including the row, in entry order: one
# window pass over the history of each grant the rows touch (index ledger_used_by_grant), not one
# sum per row. Rows of the last page of a long-lived grant cost a scan of its history up to them.
USAGE_ROWS = """
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
"""

# Units and charges per meter, group and bucket. One charge (all rows of one operation, which share
# its idempotency key) counts once, with the units it charged (the ledger's `amount`: units from
# grants and units paid as overage alike; a wallet's minor units are never added to units).
# $1 account, $2 from, $3 to, $4 meter ('' = any), $5 attribute to group by ('' = none),
# $6 the buckets' starts, ascending ($6[1] = $2): width_bucket gives the 1-based bucket.
TREND = """
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
"""
