-- Retention (retention.py): each retention_* query deletes one batch ($2 rows at most) of what is
-- past its cutoff ($1, service time in ms); SKIP LOCKED lets several replicas clean at once without
-- waiting on each other or on the hot path. The ledger is append-only and never cleaned.

-- name: retention_operations
-- idempotency answers older than the retention
WITH doomed AS (
    SELECT account_id, idempotency_key FROM operations
     WHERE created_at < to_timestamp($1 / 1000.0)
     ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM operations o USING doomed d
 WHERE o.account_id = d.account_id AND o.idempotency_key = d.idempotency_key;

-- name: retention_holds
-- holds closed (committed, released, expired) before the cutoff
WITH doomed AS (
    SELECT hold_id FROM holds
     WHERE status <> 'open' AND closed_at < to_timestamp($1 / 1000.0)
     ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM holds h USING doomed d WHERE h.hold_id = d.hold_id;

-- name: retention_dedup_marks
-- dedup marks whose window has ended, unless the hold that charged them is still open
WITH doomed AS (
    SELECT account_id, meter, dedup_key FROM dedup_marks m
     WHERE window_end_ms < $1
       AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.hold_id = m.hold_id AND h.status = 'open')
     ORDER BY window_end_ms LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM dedup_marks m USING doomed d
 WHERE m.account_id = d.account_id AND m.meter = d.meter AND m.dedup_key = d.dedup_key;

-- name: retention_alert_events
-- alert events older than the cutoff of a cycle that has ended: the current cycle's events (and
-- those of an account without a subscription, cycle 0) keep an alert from firing twice
WITH doomed AS (
    SELECT event_id FROM alert_events e
     WHERE occurred_at < to_timestamp($1 / 1000.0) AND cycle_start_ms <> 0
       AND cycle_start_ms < (SELECT s.cycle_start_ms FROM subscriptions s WHERE s.account_id = e.account_id)
     ORDER BY occurred_at LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM alert_events e USING doomed d WHERE e.event_id = d.event_id;
