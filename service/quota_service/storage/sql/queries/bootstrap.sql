-- Named queries of the first admin key of a deployment (bootstrap.py).

-- name: bootstrap_lock
-- one transaction at a time decides whether the deployment has an admin key: replicas start together
SELECT pg_advisory_xact_lock(hashtext('quota.bootstrap_admin_key'));

-- name: bootstrap_register_admin_key
-- $1 key id, $2 SHA-256 of the secret. Only when no admin key is active, and never over a key id that
-- exists: a bootstrap key that was revoked stays revoked. Returns the key id when it was registered.
INSERT INTO api_keys (key_id, secret_hash, roles, accounts, orgs, label)
SELECT $1, $2, ARRAY['admin'], ARRAY['*'], '{}', 'bootstrap'
 WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND 'admin' = ANY (roles))
ON CONFLICT (key_id) DO NOTHING
RETURNING key_id;
