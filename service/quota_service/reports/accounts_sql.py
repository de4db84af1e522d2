"""SQL of the account reports (reports/accounts.py). Times are bigint milliseconds; a ledger time is
compared as ``to_timestamp(ms / 1000.0)``, the expression every ledger writer stamps rows with, so a
row stamped at t compares equal to t.

Usage kinds are the rows the hot path writes (one per grant touched). A transaction is any other row
that names a bucket: whatever non-usage kind exists now or is added later. The predicate is spelled
exactly as in the partial index of migration 005, so the planner can use that index.
"""

from __future__ import annotations

USAGE_KINDS = ("reserve", "commit", "release", "consume", "expire")
CHARGE_KINDS = ("consume", "commit")  # the usage rows that move `used`

_NOT_USAGE = "kind NOT IN ('reserve', 'commit', 'release', 'consume', 'expire')"


def _ts(param: str) -> str:
    return f"to_timestamp({param}::bigint / 1000.0)"


def _ms(column: str) -> str:
    return f"(extract(epoch FROM {column}) * 1000)::bigint"


ACCOUNT = f"""
SELECT account_id, status, time_zone, {_ms('created_at')} AS created_ms
  FROM accounts WHERE account_id = $1"""

# the status an account had at $2: its latest status row (accounts start active)
STATUS_AT = f"""
SELECT attrs->>'status' FROM ledger
 WHERE account_id = $1 AND {_NOT_USAGE} AND kind = 'status' AND occurred_at <= {_ts('$2')}
 ORDER BY occurred_at DESC, entry_id DESC LIMIT 1"""

# every grant of the account with the time of its first ledger row (when it came to exist)
GRANTS = f"""
SELECT g.grant_id, g.bucket, g.source, g.label, g.priority, g.starts_at_ms, g.expires_at_ms, g.overdraft_limit,
       (SELECT {_ms('min(l.occurred_at)')} FROM ledger l
         WHERE l.account_id = g.account_id AND l.grant_id = g.grant_id) AS created_ms
  FROM grants g WHERE g.account_id = $1"""

# Per-grant (granted, used, held) over the rows up to a cut, two ways that agree (the projection is
# the sum of its rows): summing the rows before the cut, or taking the rows after it off the
# projection. Each reads the fewer rows when the cut is nearer its end of the account's history.
_FORWARD = """
SELECT grant_id, sum(d_granted)::bigint AS granted, sum(d_used)::bigint AS used, sum(d_held)::bigint AS held
  FROM ledger
 WHERE account_id = $1 AND grant_id IS NOT NULL AND occurred_at {op} {cut}
 GROUP BY grant_id"""
_BACKWARD = """
SELECT g.grant_id, g.granted - COALESCE(sum(l.d_granted), 0)::bigint AS granted,
       g.used - COALESCE(sum(l.d_used), 0)::bigint AS used, g.held - COALESCE(sum(l.d_held), 0)::bigint AS held
  FROM grants g
  LEFT JOIN ledger l ON l.account_id = g.account_id AND l.grant_id = g.grant_id AND l.occurred_at {op} {cut}
 WHERE g.account_id = $1
 GROUP BY g.grant_id, g.granted, g.used, g.held"""
STATES_FORWARD_INCL = _FORWARD.format(op="<=", cut=_ts("$2"))
STATES_FORWARD_EXCL = _FORWARD.format(op="<", cut=_ts("$2"))
STATES_BACKWARD_INCL = _BACKWARD.format(op=">", cut=_ts("$2"))
STATES_BACKWARD_EXCL = _BACKWARD.format(op=">=", cut=_ts("$2"))

# Holds past their time that the sweeper has not returned yet: their 'expire' rows will be stamped at
# expires_at_ms, so a report counts them as returned already (the answer does not depend on when the
# sweeper runs).
DUE_HOLDS_INCL = """
SELECT hold_id, rows, expires_at_ms FROM holds
 WHERE account_id = $1 AND status = 'open' AND expires_at_ms <= $2"""
DUE_HOLDS_EXCL = """
SELECT hold_id, rows, expires_at_ms FROM holds
 WHERE account_id = $1 AND status = 'open' AND expires_at_ms < $2"""

_TRANSACTION_COLUMNS = f"""
SELECT l.entry_id, {_ms('l.occurred_at')} AS at_ms, l.kind, COALESCE(l.grant_id, '') AS grant_id, l.bucket,
       l.d_granted, l.d_used, COALESCE(l.amount, 0) AS amount, COALESCE(g.source, '') AS source,
       COALESCE(g.label, '') AS label, COALESCE(l.idempotency_key, '') AS idempotency_key,
       COALESCE(l.meter, '') AS meter
  FROM ledger l
  LEFT JOIN grants g ON g.grant_id = l.grant_id AND g.account_id = l.account_id"""

# Money a charge took from a wallet (overage): listed as a 'charge' transaction beside the others,
# labelled by the plan's overage label (TA8: "AI"); the units themselves are usage, never listed.
_CHARGE_COLUMNS = f"""
SELECT l.entry_id, {_ms('l.occurred_at')} AS at_ms, 'charge' AS kind, COALESCE(l.grant_id, '') AS grant_id,
       l.bucket, 0::bigint AS d_granted, l.d_used, COALESCE(l.amount, 0) AS amount,
       COALESCE(g.source, '') AS source, '' AS label, COALESCE(l.idempotency_key, '') AS idempotency_key,
       COALESCE(l.meter, '') AS meter
  FROM ledger l
  LEFT JOIN grants g ON g.grant_id = l.grant_id AND g.account_id = l.account_id"""

# $2 from (inclusive), $3 to (exclusive), $4 kinds (empty: all), $5/$6 the page position (NULL: first)
TRANSACTIONS_PAGE = f"""
SELECT * FROM (
  ({_TRANSACTION_COLUMNS}
    WHERE l.account_id = $1 AND l.{_NOT_USAGE} AND l.bucket <> ''
      AND l.occurred_at >= {_ts('$2')} AND l.occurred_at < {_ts('$3')}
      AND (cardinality($4::text[]) = 0 OR l.kind = ANY($4::text[]))
      AND ($5::bigint IS NULL OR (l.occurred_at, l.entry_id) < ({_ts('$5')}, $6::bigint))
    ORDER BY l.occurred_at DESC, l.entry_id DESC
    LIMIT $7)
  UNION ALL
  ({_CHARGE_COLUMNS}
    WHERE l.account_id = $1 AND l.kind IN ('consume', 'commit') AND l.d_used <> 0 AND left(l.bucket, 1) = '$'
      AND l.occurred_at >= {_ts('$2')} AND l.occurred_at < {_ts('$3')}
      AND (cardinality($4::text[]) = 0 OR 'charge' = ANY($4::text[]))
      AND ($5::bigint IS NULL OR (l.occurred_at, l.entry_id) < ({_ts('$5')}, $6::bigint))
    ORDER BY l.occurred_at DESC, l.entry_id DESC
    LIMIT $7)
) t
 ORDER BY at_ms DESC, entry_id DESC
 LIMIT $7"""

# the overage labels of the account's plan: meter -> label (TA8)
PLAN_OF = "SELECT product, plan FROM subscriptions WHERE account_id = $1"

# the transactions stamped in [$2, $3] (both ends: the caller sorts out the boundary rows)
TRANSACTIONS_BETWEEN = f"""{_TRANSACTION_COLUMNS}
 WHERE l.account_id = $1 AND l.{_NOT_USAGE} AND l.bucket <> ''
   AND l.occurred_at >= {_ts('$2')} AND l.occurred_at <= {_ts('$3')}
 ORDER BY l.occurred_at, l.entry_id"""

# every row stamped in [$2, $3], summed per grant, kind and boundary position
WINDOW_FLOWS = f"""
SELECT COALESCE(grant_id, '') AS grant_id, COALESCE(bucket, '') AS bucket, kind,
       occurred_at = {_ts('$2')} AS at_start, occurred_at = {_ts('$3')} AS at_end,
       COALESCE(kind = 'carry_over' AND attrs->>'from_grant' = grant_id, false) AS carry_out,
       sum(d_granted)::bigint AS d_granted, sum(d_used)::bigint AS d_used, sum(d_held)::bigint AS d_held,
       COALESCE(sum(amount), 0)::bigint AS amount
  FROM ledger
 WHERE account_id = $1 AND occurred_at >= {_ts('$2')} AND occurred_at <= {_ts('$3')}
 GROUP BY 1, 2, 3, 4, 5, 6"""

# Charges in [$2, $3) that drew money from a wallet for a meter (overage, H6), one row per charge.
# Every row of one charge carries the charge's units (`amount`: the request, or a commit's actual);
# the units beyond the grants are that minus what the meter's own grants gave.
OVERAGE = f"""
SELECT meter, max(bucket) FILTER (WHERE left(bucket, 1) = '$') AS wallet, max(amount) AS units,
       COALESCE(sum(d_used) FILTER (WHERE bucket = meter), 0)::bigint AS from_grants,
       COALESCE(sum(d_used) FILTER (WHERE left(bucket, 1) = '$'), 0)::bigint AS minor
  FROM ledger
 WHERE account_id = $1 AND kind IN ('consume', 'commit') AND meter <> ''
   AND occurred_at >= {_ts('$2')} AND occurred_at < {_ts('$3')}
 GROUP BY kind, idempotency_key, meter
HAVING COALESCE(sum(d_used) FILTER (WHERE left(bucket, 1) = '$'), 0) <> 0"""

SUBSCRIPTION = """
SELECT s.product, s.plan, s.interval, s.anchor_at_ms, s.cycle_no, s.cycle_start_ms, s.cycle_end_ms,
       a.time_zone
  FROM subscriptions s JOIN accounts a USING (account_id)
 WHERE s.account_id = $1"""

# Past cycles' bounds and plans, where the service keeps them (a table added with plan changes: a
# re-anchored subscription's past cycles cannot be computed from its current anchor).
HAS_CYCLE_TABLE = "SELECT to_regclass('subscription_cycles') IS NOT NULL"
RECORDED_CYCLE = """
SELECT product, plan, cycle_start_ms, cycle_end_ms FROM subscription_cycles
 WHERE account_id = $1 AND cycle_no = $2"""

# $2: the last account of the previous page (NULL: the first page)
ORG_ACCOUNTS = """
SELECT a.account_id, a.org_id, a.owner_id, a.status, COALESCE(s.product, '') AS product, COALESCE(s.plan, '') AS plan,
       COALESCE(s.interval, '') AS interval, COALESCE(s.cycle_end_ms, 0) AS cycle_end_ms, s.pending
  FROM accounts a
  LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.org_id = $1 AND ($2::text IS NULL OR a.account_id > $2::text)
 ORDER BY a.account_id
 LIMIT $3"""

# the projection of the grants live at $2 (started, not expired), of several accounts
LIVE_GRANTS = """
SELECT account_id, grant_id, bucket, source, label, priority, starts_at_ms, expires_at_ms, granted, used, held,
       overdraft_limit
  FROM grants
 WHERE account_id = ANY($1::text[]) AND starts_at_ms <= $2 AND (expires_at_ms = 0 OR expires_at_ms > $2)"""

DUE_HOLDS_OF = """
SELECT account_id, rows FROM holds
 WHERE account_id = ANY($1::text[]) AND status = 'open' AND expires_at_ms <= $2"""

# the subscription cycle in force at $2 (subscription_cycles keeps every cycle with its bounds)
CYCLE_AT = """
SELECT cycle_start_ms, cycle_end_ms, product, plan FROM subscription_cycles
 WHERE account_id = $1 AND cycle_start_ms <= $2 AND cycle_end_ms > $2
 ORDER BY cycle_no DESC LIMIT 1"""

# the meters and wallets of several accounts, as their balances list them (R1, FB8): every bucket
# with a grant, live or ended, and every meter with a policy
KNOWN_BUCKETS = """
SELECT account_id, bucket FROM grants WHERE account_id = ANY($1::text[])
 UNION
SELECT a.account_id, m FROM accounts a, jsonb_object_keys(coalesce(a.policies, '{}')) AS m
 WHERE a.account_id = ANY($1::text[])"""

# the meters the account has a policy for now, and its subscription's product and plan now: a
# balance lists those meters, zeros included (R1, FB8)
POLICY_METERS = """
SELECT (SELECT coalesce(array_agg(m ORDER BY m), '{}') FROM accounts, jsonb_object_keys(coalesce(policies, '{}')) AS m
         WHERE account_id = $1) AS meters,
       s.product, s.plan
  FROM (SELECT 1) AS one LEFT JOIN subscriptions s ON s.account_id = $1"""
