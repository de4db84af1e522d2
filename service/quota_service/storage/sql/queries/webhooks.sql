-- Webhook endpoints (app/webhooks.py) and billing contacts (app/accounts.py). Times are the service
-- clock's milliseconds since the epoch. No statement here returns a secret except
-- webhook_signing_secrets, which is for signing only.

-- name: webhook_insert
INSERT INTO webhook_endpoints (endpoint_id, account_id, org_id, url, event_types, description, enabled, secret,
                               created_at, updated_at)
VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), $4, $5, $6, true, $7, to_timestamp($8 / 1000.0), to_timestamp($8 / 1000.0));

-- name: webhook_owner_lock
-- one creation at a time per owner (account or organization): the cap on endpoints holds under races
SELECT pg_advisory_xact_lock(hashtext($1));

-- name: webhook_owner_count
SELECT count(*) FROM webhook_endpoints WHERE account_id = $1 OR org_id = $2;

-- name: webhook_get
-- an endpoint as the API shows it: everything but its secrets
SELECT endpoint_id, COALESCE(account_id, '') AS account_id, COALESCE(org_id, '') AS org_id, url, event_types,
       description, enabled, COALESCE(disabled_reason, '') AS disabled_reason,
       (extract(epoch FROM created_at) * 1000)::bigint AS created_at_ms,
       (extract(epoch FROM updated_at) * 1000)::bigint AS updated_at_ms,
       COALESCE((extract(epoch FROM previous_secret_until) * 1000)::bigint, 0) AS previous_secret_until_ms
  FROM webhook_endpoints WHERE endpoint_id = $1;

-- name: webhook_list
-- a page of endpoints by endpoint_id after $3: of an account ($1), of an organization ($2), or all ('' both)
SELECT endpoint_id, COALESCE(account_id, '') AS account_id, COALESCE(org_id, '') AS org_id, url, event_types,
       description, enabled, COALESCE(disabled_reason, '') AS disabled_reason,
       (extract(epoch FROM created_at) * 1000)::bigint AS created_at_ms,
       (extract(epoch FROM updated_at) * 1000)::bigint AS updated_at_ms,
       COALESCE((extract(epoch FROM previous_secret_until) * 1000)::bigint, 0) AS previous_secret_until_ms
  FROM webhook_endpoints
 WHERE ($1 = '' OR account_id = $1) AND ($2 = '' OR org_id = $2) AND endpoint_id > $3
 ORDER BY endpoint_id
 LIMIT $4;

-- name: webhook_lock
SELECT endpoint_id FROM webhook_endpoints WHERE endpoint_id = $1 FOR UPDATE;

-- name: webhook_set_enabled
-- enabling clears the reason (the dispatcher's gone or failing too); disabling by an admin says manual
UPDATE webhook_endpoints
   SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE 'manual' END, updated_at = to_timestamp($3 / 1000.0)
 WHERE endpoint_id = $1;

-- name: webhook_rotate
-- the new secret $2; the old one signs too until $3 (ms), or stops at once when $3 is NULL
UPDATE webhook_endpoints
   SET previous_secret = CASE WHEN $3::bigint IS NULL THEN NULL ELSE secret END,
       previous_secret_until = to_timestamp($3::bigint / 1000.0),
       secret = $2, updated_at = to_timestamp($4 / 1000.0)
 WHERE endpoint_id = $1;

-- name: webhook_delete
DELETE FROM webhook_endpoints WHERE endpoint_id = $1;

-- name: webhook_signing_secrets
-- what signs a delivery to the endpoint (see app/webhooks.signing_secrets)
SELECT secret, previous_secret, previous_secret_until FROM webhook_endpoints WHERE endpoint_id = $1;

-- name: set_billing_contacts
-- $3 '' keeps the account's language
UPDATE accounts SET billing_emails = $2, language = COALESCE(NULLIF($3, ''), language)
 WHERE account_id = $1
RETURNING account_id;
