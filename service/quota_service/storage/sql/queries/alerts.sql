-- Named queries of the alert feed (app/alerts.py). A block starts with a line "-- name: <name>".
-- Alert events are stored by a trigger of migration 008, in the transaction of the charge that
-- crossed them; a stream reads them by event_id, with the indexes alert_events_account and
-- alert_events_org.

-- name: alert_backlog_of_account
-- one account's events in ($2, $3], oldest first, at most $4
SELECT event_id, account_id, org_id, meter, threshold_pct_left, cycle_start_ms,
       (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, idempotency_key
  FROM alert_events
 WHERE account_id = $1 AND event_id > $2 AND event_id <= $3
 ORDER BY event_id LIMIT $4

-- name: alert_backlog_of_org
-- an organization's events in ($2, $3], oldest first, at most $4
SELECT event_id, account_id, org_id, meter, threshold_pct_left, cycle_start_ms,
       (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, idempotency_key
  FROM alert_events
 WHERE org_id = $1 AND event_id > $2 AND event_id <= $3
 ORDER BY event_id LIMIT $4

-- name: alert_events_after
-- the hub: every event after its cursor $1, oldest first, at most $2
SELECT event_id, account_id, org_id, meter, threshold_pct_left, cycle_start_ms,
       (extract(epoch FROM occurred_at) * 1000)::bigint AS at_ms, idempotency_key
  FROM alert_events
 WHERE event_id > $1
 ORDER BY event_id LIMIT $2

-- name: alert_last_event
SELECT COALESCE(max(event_id), 0) FROM alert_events
