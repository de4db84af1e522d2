-- Named queries of the API keys (auth.py, and the `quota-service keys` command). Only a SHA-256 hash
-- of a key's secret is stored (migration 002).

-- name: auth_create_key
INSERT INTO api_keys (key_id, secret_hash, roles, accounts, orgs, label) VALUES ($1, $2, $3, $4, $5, $6);

-- name: auth_revoke_key
-- a key revoked twice keeps its first revocation time ("UPDATE 0": no such active key)
UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL;

-- name: auth_active_key
SELECT secret_hash, roles, accounts, orgs FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL;

-- name: auth_active_key_ids
SELECT key_id FROM api_keys WHERE revoked_at IS NULL;

-- name: auth_account_org
SELECT COALESCE(org_id, '') FROM accounts WHERE account_id = $1;

-- name: auth_list_keys
-- every key, revoked ones too, oldest first (no secret hash: nothing an operator needs)
SELECT key_id, roles, accounts, orgs, label, created_at, revoked_at FROM api_keys ORDER BY created_at;
