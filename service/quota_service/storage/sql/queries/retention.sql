-- Retention (retention.py): each retention_* query deletes one batch ($2 rows at most) of what is
-- past its cutoff ($1, in ms of the rows' clock: the service's, Postgres's for deliveries); SKIP
-- LOCKED lets several replicas clean at once without waiting on each other or on the hot path
-- (events: retention_events_lock takes the batch and retention_events deletes it, in one
-- transaction). The ledger is append-only and never cleaned.

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

-- name: retention_deliveries
-- deliveries finished (delivered, failed, disabled) before the cutoff, in Postgres's time like
-- finished_at (the cutoff comes from retention_postgres_now_ms); their attempts go with them (ON
-- DELETE CASCADE). A pending delivery, retried or waiting its turn, is never deleted: a replay that
-- makes one pending again clears its finished_at (trigger deliveries_finished)
WITH doomed AS (
    SELECT delivery_id FROM deliveries
     WHERE status <> 'pending' AND finished_at < to_timestamp($1 / 1000.0)
     ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)
DELETE FROM deliveries d USING doomed x WHERE d.delivery_id = x.delivery_id;

-- name: retention_events_lock
-- events older than the cutoff that no delivery refers to any more, locked: an event is kept while
-- a delivery of it is pending, and while the record of a finished one is (ListDeliveries shows the
-- event with it). Deliveries are made by the trigger events_fan_out in the event's own transaction,
-- so every event a reader can see has been fanned out already. alert_events, the once-per-cycle
-- record that keeps an alert from firing twice, has its own retention (retention_alert_events)
SELECT event_seq FROM events e
 WHERE occurred_at < to_timestamp($1 / 1000.0)
   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.event_seq)
 ORDER BY occurred_at LIMIT $2 FOR UPDATE SKIP LOCKED;

-- name: retention_events
-- the events locked by retention_events_lock ($1), in the same transaction, that still have no
-- delivery. A statement of its own, so it sees every delivery committed before the lock was taken
-- (a replay's, ReplayDeliveries --since); one made later waits for the lock, then fails: the event
-- is gone. Deleting in the locking statement would cascade to such a delivery, pending, unseen
DELETE FROM events e
 WHERE e.event_seq = ANY ($1::bigint[])
   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.event_seq);

-- name: retention_postgres_now_ms
-- Postgres's time (ms): the clock of the deliveries' times, for their cutoff
SELECT (extract(epoch FROM now()) * 1000)::bigint;
