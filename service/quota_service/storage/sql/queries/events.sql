-- Named queries of events (domain/events.py): written by the billing transactions
-- (storage/billing.py) and read by WatchAlerts (app/alerts.py). A block starts with a line
-- "-- name: <name>". Alert events (alert.triggered) are written by quota_record_alerts.

-- name: events_lock
-- taken first by a transaction that may write events, before any account row (events_in_commit_order)
SELECT pg_advisory_xact_lock(7412015);

-- name: insert_event
-- $1 account, $2 type, $3 occurred at (ms), $4 data; the account, organization, meter ("") and the
-- current cycle's start are added where $4 does not give them
INSERT INTO events (type, account_id, org_id, occurred_at, data)
SELECT $2, a.account_id, a.org_id, to_timestamp($3::bigint / 1000.0),
       jsonb_build_object('account_id', a.account_id, 'organization_id', COALESCE(a.org_id, ''), 'meter', '',
                          'cycle_start_ms', COALESCE(s.cycle_start_ms, 0)) || $4::jsonb
  FROM accounts a LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.account_id = $1;

-- name: resolve_alert
UPDATE alert_events SET resolved_at = to_timestamp($5::bigint / 1000.0)
 WHERE account_id = $1 AND meter = $2 AND threshold_pct_left = $3 AND cycle_start_ms = $4 AND resolved_at IS NULL;

-- name: open_alerts
-- an account's alerts crossed and not resolved
SELECT meter, threshold_pct_left, cycle_start_ms FROM alert_events
 WHERE account_id = $1 AND resolved_at IS NULL
 ORDER BY cycle_start_ms, meter, threshold_pct_left DESC;

-- name: alert_state
-- what resolving an account's alerts reads: the policies and the current cycle's start
SELECT a.policies, COALESCE(s.cycle_start_ms, 0) AS cycle_start_ms
  FROM accounts a LEFT JOIN subscriptions s ON s.account_id = a.account_id
 WHERE a.account_id = $1;

-- name: meter_totals
-- granted and remaining units of the live grants of each meter $2 at $3 (as the hot path counts them)
SELECT bucket, COALESCE(sum(granted), 0)::bigint AS granted, COALESCE(sum(granted - used - held), 0)::bigint AS remaining
  FROM grants
 WHERE account_id = $1 AND bucket = ANY($2::text[]) AND starts_at_ms <= $3 AND (expires_at_ms = 0 OR expires_at_ms > $3)
 GROUP BY bucket;

-- name: events_backlog_of_account
-- one account's events of types $5 in ($2, $3], oldest first, at most $4
SELECT event_seq, event_id, type, account_id, org_id, (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, data
  FROM events
 WHERE account_id = $1 AND event_seq > $2 AND event_seq <= $3 AND type = ANY($5::text[])
 ORDER BY event_seq LIMIT $4;

-- name: events_backlog_of_org
-- an organization's events of types $5 in ($2, $3], oldest first, at most $4
SELECT event_seq, event_id, type, account_id, org_id, (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, data
  FROM events
 WHERE org_id = $1 AND event_seq > $2 AND event_seq <= $3 AND type = ANY($5::text[])
 ORDER BY event_seq LIMIT $4;

-- name: events_after
-- the hub: every event after its cursor $1, oldest first, at most $2
SELECT event_seq, event_id, type, account_id, org_id, (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, data
  FROM events
 WHERE event_seq > $1
 ORDER BY event_seq LIMIT $2;

-- name: events_last
SELECT COALESCE(max(event_seq), 0) FROM events;

-- name: account_alert_thresholds
-- each meter's alert thresholds (percent left) from the account's policies: GetBalance's banners
SELECT key AS meter, value -> 'al' AS al FROM accounts, jsonb_each(policies) WHERE account_id = $1;

-- name: accounts_with_open_alerts
-- which of these accounts have an alert crossed and not resolved
SELECT DISTINCT account_id FROM alert_events WHERE account_id = ANY($1::text[]) AND resolved_at IS NULL;
