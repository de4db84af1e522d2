-- Named queries of the delivery dispatcher (delivery/dispatcher.py) and of ListDeliveries and the
-- replays (delivery/admin.py). Deliveries are made by the trigger events_fan_out (migration 018).
-- Times are Postgres's now(): every replica schedules retries on the same clock.

-- name: delivery_claim
-- one due delivery, locked for the sending replica (released by its commit, or by its death): pending,
-- due, its endpoint enabled (webhooks), and no earlier event of the same account still pending for the
-- same target (per-account order)
SELECT d.delivery_id, d.event_id, d.account_id, d.channel, d.endpoint_id, d.recipient, d.attempts, d.window_attempts,
       (extract(epoch FROM COALESCE(d.window_start, now())) * 1000)::bigint AS window_start_ms,
       (extract(epoch FROM now()) * 1000)::bigint AS now_ms,
       e.event_seq, e.type, e.org_id, (extract(epoch FROM e.occurred_at) * 1000)::bigint AS occurred_at_ms, e.data,
       w.url, w.secret, w.previous_secret, w.previous_secret_until
  FROM deliveries d
  JOIN events e ON e.event_seq = d.event_seq
  LEFT JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id
 WHERE d.status = 'pending' AND d.next_attempt_at <= now()
   AND (d.channel <> 'webhook' OR w.enabled)
   AND NOT EXISTS (SELECT 1 FROM deliveries p
                    WHERE p.account_id = d.account_id AND p.status = 'pending' AND p.event_seq < d.event_seq
                      AND p.channel = d.channel
                      AND p.endpoint_id IS NOT DISTINCT FROM d.endpoint_id
                      AND p.recipient IS NOT DISTINCT FROM d.recipient)
 ORDER BY d.next_attempt_at, d.event_seq
 LIMIT 1
   FOR UPDATE OF d SKIP LOCKED

-- name: delivery_record_attempt
-- one attempt of delivery $1: when it started ($2 ms), HTTP status, latency, response excerpt, error, outcome
INSERT INTO delivery_attempts (delivery_id, attempted_at, status_code, latency_ms, response, error, outcome)
VALUES ($1, to_timestamp($2 / 1000.0), $3, $4, $5, $6, $7)

-- name: delivery_update
-- after an attempt made at $6 (ms): the new status ($2), when to try again ($3 ms; ignored unless
-- pending), the last answer; the retry window starts with the first attempt; delivered_at when delivered
UPDATE deliveries
   SET status = $2, attempts = attempts + 1, window_attempts = window_attempts + 1, next_attempt_at = to_timestamp($3 / 1000.0),
       last_status = $4, last_error = $5, window_start = COALESCE(window_start, to_timestamp($6 / 1000.0)),
       delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END
 WHERE delivery_id = $1

-- name: endpoint_disable
-- the dispatcher disables an endpoint: it answered 410 Gone, or failed for a whole retry window
UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
 WHERE endpoint_id = $1 AND enabled

-- name: deliveries_of_disabled_endpoints
-- pending deliveries of disabled endpoints become 'disabled' (a replay sends them again); rows another
-- replica is sending are left for the next pass
UPDATE deliveries SET status = 'disabled'
 WHERE delivery_id IN (SELECT d.delivery_id FROM deliveries d JOIN webhook_endpoints w USING (endpoint_id)
                        WHERE d.status = 'pending' AND NOT w.enabled
                        LIMIT 1000
                          FOR UPDATE OF d SKIP LOCKED)

-- name: delivery_backlog
-- pending deliveries, the age of the oldest (seconds) and how long until the next one is due (ms; 0 = now)
SELECT count(*) AS pending,
       COALESCE(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_s,
       (extract(epoch FROM GREATEST(min(d.next_attempt_at) - now(), interval '0')) * 1000)::bigint AS next_due_ms
  FROM deliveries d
 WHERE d.status = 'pending'

-- name: deliveries_of_endpoint
-- ListDeliveries by endpoint: after delivery $2 (0 = from the first), oldest first, at most $3
SELECT d.*, (extract(epoch FROM d.created_at) * 1000)::bigint AS created_at_ms,
       (extract(epoch FROM d.delivered_at) * 1000)::bigint AS delivered_at_ms,
       (extract(epoch FROM d.next_attempt_at) * 1000)::bigint AS next_attempt_at_ms, e.type
  FROM deliveries d JOIN events e USING (event_seq)
 WHERE d.endpoint_id = $1 AND d.delivery_id > $2
 ORDER BY d.delivery_id LIMIT $3

-- name: deliveries_of_account
-- ListDeliveries by account: after delivery $2 (0 = from the first), oldest first, at most $3
SELECT d.*, (extract(epoch FROM d.created_at) * 1000)::bigint AS created_at_ms,
       (extract(epoch FROM d.delivered_at) * 1000)::bigint AS delivered_at_ms,
       (extract(epoch FROM d.next_attempt_at) * 1000)::bigint AS next_attempt_at_ms, e.type
  FROM deliveries d JOIN events e USING (event_seq)
 WHERE d.account_id = $1 AND d.delivery_id > $2
 ORDER BY d.delivery_id LIMIT $3

-- name: delivery_attempts_of
-- the attempts of deliveries $1 (an array), oldest first
SELECT delivery_id, (extract(epoch FROM attempted_at) * 1000)::bigint AS attempted_at_ms, status_code,
       latency_ms, response, error, outcome
  FROM delivery_attempts
 WHERE delivery_id = ANY ($1::bigint[])
 ORDER BY delivery_id, attempt_id

-- name: delivery_replay_one
-- send delivery $1 again, with a new retry window
UPDATE deliveries SET status = 'pending', next_attempt_at = now(), window_start = NULL, window_attempts = 0
 WHERE delivery_id = $1

-- name: delivery_exists
-- a delivery a replay names: its account, its endpoint's owner and whether the endpoint is enabled
SELECT d.delivery_id, d.account_id, d.endpoint_id, w.account_id AS endpoint_account_id, w.org_id AS endpoint_org_id,
       COALESCE(w.enabled, true) AS enabled
  FROM deliveries d LEFT JOIN webhook_endpoints w USING (endpoint_id)
 WHERE d.delivery_id = $1

-- name: delivery_endpoint
-- the endpoint a listing or a replay names: its owner and whether it is enabled
SELECT endpoint_id, account_id, org_id, enabled FROM webhook_endpoints WHERE endpoint_id = $1

-- name: event_seq_of
SELECT event_seq FROM events WHERE event_id = $1

-- name: delivery_replay_endpoint
-- every event of endpoint $1 from event_seq $2 on, that the endpoint matches (its account or organization,
-- its types): a delivery made now when there was none (the endpoint was disabled or did not exist), or
-- the existing one sent again; how many
WITH w AS (SELECT * FROM webhook_endpoints WHERE endpoint_id = $1),
     made AS (
    INSERT INTO deliveries (event_seq, event_id, account_id, channel, endpoint_id)
    SELECT e.event_seq, e.event_id, e.account_id, 'webhook', w.endpoint_id
      FROM w JOIN events e
        ON (e.account_id = w.account_id OR (e.org_id IS NOT NULL AND e.org_id = w.org_id))
       AND (cardinality(w.event_types) = 0 OR e.type = ANY (w.event_types))
     WHERE e.event_seq >= $2
     ORDER BY e.event_seq
    ON CONFLICT (event_seq, endpoint_id) WHERE endpoint_id IS NOT NULL
    DO UPDATE SET status = 'pending', next_attempt_at = now(), window_start = NULL, window_attempts = 0
    RETURNING 1)
SELECT count(*) FROM made

-- name: delivery_wake
-- wake the dispatchers of every replica (a replay made deliveries due)
SELECT pg_notify('quota_events', $1)
