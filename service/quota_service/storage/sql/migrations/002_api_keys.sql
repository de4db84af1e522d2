-- API keys: only a hash of the secret is stored. A key has roles (enforce, read, admin) and is
-- scoped to accounts and/or organizations ('*' in accounts = every account).
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    secret_hash  text NOT NULL,
    roles        text[] NOT NULL CHECK (roles <@ ARRAY['enforce', 'read', 'admin']::text[] AND cardinality(roles) > 0),
    accounts     text[] NOT NULL DEFAULT '{}',
    orgs         text[] NOT NULL DEFAULT '{}',
    label        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
