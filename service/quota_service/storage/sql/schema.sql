-- The schema that the migration chain (sql/migrations/*.sql, then sql/functions/*.sql) builds, read
-- from a fresh database's catalogue by storage/schema_dump.py. Generated: do not edit; regenerate with
--   python -m quota_service.storage.schema_dump --fresh <admin DSN> --write
-- (tests/integration/test_schema.py checks it). The ledger's monthly partitions (ledger_YYYY_MM) depend
-- on the date and are left out.

-- Functions (their bodies: sql/functions/<name>.sql)
-- FUNCTION deliveries_finished() RETURNS trigger LANGUAGE plpgsql VOLATILE
-- FUNCTION events_in_commit_order() RETURNS trigger LANGUAGE plpgsql VOLATILE
-- FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql VOLATILE
-- FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql VOLATILE
-- FUNCTION ledger_ensure_partitions(from_ts timestamp with time zone, to_ts timestamp with time zone) RETURNS integer LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_apply(batch jsonb) RETURNS TABLE(idx integer, status text, request_hash text, response text) LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_apply_one(e jsonb) RETURNS text LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_event_id() RETURNS text LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_expire_holds(acct text, now_ms bigint) RETURNS integer LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_fan_out_event() RETURNS trigger LANGUAGE plpgsql VOLATILE
-- FUNCTION quota_record_alerts() RETURNS trigger LANGUAGE plpgsql VOLATILE

CREATE TABLE accounts (
    account_id text NOT NULL,
    org_id text,
    time_zone text NOT NULL DEFAULT 'UTC'::text,
    status text NOT NULL DEFAULT 'active'::text,
    policies jsonb NOT NULL DEFAULT '{}'::jsonb,
    epoch bigint NOT NULL DEFAULT 0,
    created_at timestamp with time zone NOT NULL,
    owner_id text NOT NULL DEFAULT ''::text,
    billing_emails text[] NOT NULL DEFAULT '{}'::text[],
    language text NOT NULL DEFAULT 'en'::text,
    CONSTRAINT accounts_language_check CHECK ((language = ANY (ARRAY['en'::text, 'id'::text]))),
    CONSTRAINT accounts_pkey PRIMARY KEY (account_id),
    CONSTRAINT accounts_status_check CHECK ((status = ANY (ARRAY['active'::text, 'suspended'::text, 'expired'::text])))
);
CREATE INDEX accounts_org ON accounts USING btree (org_id) WHERE (org_id IS NOT NULL);
CREATE INDEX accounts_org_account ON accounts USING btree (org_id, account_id) WHERE (org_id IS NOT NULL);

CREATE TABLE alert_events (
    event_id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    account_id text NOT NULL,
    org_id text,
    meter text NOT NULL,
    threshold_pct_left integer NOT NULL,
    cycle_start_ms bigint NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    idempotency_key text NOT NULL,
    resolved_at timestamp with time zone,
    CONSTRAINT alert_events_account_id_meter_threshold_pct_left_cycle_star_key UNIQUE (account_id, meter, threshold_pct_left, cycle_start_ms),
    CONSTRAINT alert_events_pkey PRIMARY KEY (event_id)
);
CREATE INDEX alert_events_account ON alert_events USING btree (account_id, event_id);
CREATE INDEX alert_events_occurred ON alert_events USING btree (occurred_at);
CREATE INDEX alert_events_org ON alert_events USING btree (org_id, event_id) WHERE (org_id IS NOT NULL);

CREATE TABLE api_keys (
    key_id text NOT NULL,
    secret_hash text NOT NULL,
    roles text[] NOT NULL,
    accounts text[] NOT NULL DEFAULT '{}'::text[],
    orgs text[] NOT NULL DEFAULT '{}'::text[],
    label text NOT NULL DEFAULT ''::text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    revoked_at timestamp with time zone,
    CONSTRAINT api_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT api_keys_roles_check CHECK (((roles <@ ARRAY['enforce'::text, 'read'::text, 'admin'::text, 'self_service'::text]) AND (cardinality(roles) > 0))),
    CONSTRAINT api_keys_self_service_scope CHECK (((NOT (roles @> ARRAY['self_service'::text])) OR ((cardinality(accounts) = 1) AND (accounts[1] <> '*'::text) AND (cardinality(orgs) = 0))))
);

CREATE TABLE dedup_marks (
    account_id text NOT NULL,
    meter text NOT NULL,
    dedup_key text NOT NULL,
    window_end_ms bigint NOT NULL,
    hold_id text,
    CONSTRAINT dedup_marks_pkey PRIMARY KEY (account_id, meter, dedup_key)
);
CREATE INDEX dedup_marks_window_end ON dedup_marks USING btree (window_end_ms);

CREATE TABLE deliveries (
    delivery_id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    event_seq bigint NOT NULL,
    event_id text NOT NULL,
    account_id text NOT NULL,
    channel text NOT NULL,
    endpoint_id text,
    recipient text,
    status text NOT NULL DEFAULT 'pending'::text,
    attempts integer NOT NULL DEFAULT 0,
    window_attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamp with time zone NOT NULL DEFAULT now(),
    window_start timestamp with time zone,
    last_status integer,
    last_error text,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    delivered_at timestamp with time zone,
    finished_at timestamp with time zone,
    CONSTRAINT deliveries_channel_check CHECK ((channel = ANY (ARRAY['webhook'::text, 'email'::text]))),
    CONSTRAINT deliveries_check CHECK (((channel = 'webhook'::text) = (endpoint_id IS NOT NULL))),
    CONSTRAINT deliveries_check1 CHECK (((channel = 'email'::text) = (recipient IS NOT NULL))),
    CONSTRAINT deliveries_endpoint_id_fkey FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints(endpoint_id) ON DELETE CASCADE,
    CONSTRAINT deliveries_event_seq_fkey FOREIGN KEY (event_seq) REFERENCES events(event_seq) ON DELETE CASCADE,
    CONSTRAINT deliveries_pkey PRIMARY KEY (delivery_id),
    CONSTRAINT deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'delivered'::text, 'failed'::text, 'disabled'::text])))
);
CREATE INDEX deliveries_account ON deliveries USING btree (account_id, event_seq);
CREATE INDEX deliveries_due ON deliveries USING btree (next_attempt_at) WHERE (status = 'pending'::text);
CREATE INDEX deliveries_endpoint ON deliveries USING btree (endpoint_id, event_seq) WHERE (endpoint_id IS NOT NULL);
CREATE INDEX deliveries_event ON deliveries USING btree (event_seq);
CREATE UNIQUE INDEX deliveries_event_endpoint ON deliveries USING btree (event_seq, endpoint_id) WHERE (endpoint_id IS NOT NULL);
CREATE UNIQUE INDEX deliveries_event_recipient ON deliveries USING btree (event_seq, recipient) WHERE (recipient IS NOT NULL);
CREATE INDEX deliveries_finished_at ON deliveries USING btree (finished_at) WHERE (status <> 'pending'::text);
CREATE INDEX deliveries_pending_order ON deliveries USING btree (account_id, event_seq) WHERE (status = 'pending'::text);
CREATE TRIGGER deliveries_finished BEFORE UPDATE ON deliveries FOR EACH ROW WHEN ((old.status IS DISTINCT FROM new.status)) EXECUTE FUNCTION deliveries_finished();

CREATE TABLE delivery_attempts (
    attempt_id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    delivery_id bigint NOT NULL,
    attempted_at timestamp with time zone NOT NULL,
    status_code integer NOT NULL,
    latency_ms integer NOT NULL,
    response text NOT NULL DEFAULT ''::text,
    error text NOT NULL DEFAULT ''::text,
    outcome text NOT NULL,
    CONSTRAINT delivery_attempts_delivery_id_fkey FOREIGN KEY (delivery_id) REFERENCES deliveries(delivery_id) ON DELETE CASCADE,
    CONSTRAINT delivery_attempts_outcome_check CHECK ((outcome = ANY (ARRAY['delivered'::text, 'retried'::text, 'failed'::text, 'gone'::text]))),
    CONSTRAINT delivery_attempts_pkey PRIMARY KEY (attempt_id)
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts USING btree (delivery_id, attempt_id);

CREATE TABLE events (
    event_seq bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    event_id text NOT NULL DEFAULT quota_event_id(),
    type text NOT NULL,
    account_id text NOT NULL,
    org_id text,
    occurred_at timestamp with time zone NOT NULL,
    data jsonb NOT NULL,
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_pkey PRIMARY KEY (event_seq)
);
CREATE INDEX events_account ON events USING btree (account_id, event_seq);
CREATE INDEX events_occurred ON events USING btree (occurred_at);
CREATE INDEX events_org ON events USING btree (org_id, event_seq) WHERE (org_id IS NOT NULL);
CREATE TRIGGER events_fan_out AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION quota_fan_out_event();
CREATE TRIGGER events_in_commit_order BEFORE INSERT ON events FOR EACH STATEMENT EXECUTE FUNCTION events_in_commit_order();
CREATE TRIGGER events_notify AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_notify();

CREATE TABLE grants (
    grant_id text NOT NULL,
    account_id text NOT NULL,
    bucket text NOT NULL,
    source text NOT NULL,
    label text NOT NULL DEFAULT ''::text,
    priority integer NOT NULL,
    ord bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    starts_at_ms bigint NOT NULL,
    expires_at_ms bigint NOT NULL DEFAULT 0,
    granted bigint NOT NULL,
    used bigint NOT NULL DEFAULT 0,
    held bigint NOT NULL DEFAULT 0,
    overdraft_limit bigint NOT NULL DEFAULT 0,
    item text,
    cycle_no integer,
    carries integer NOT NULL DEFAULT 0,
    debt_overdraft bigint NOT NULL DEFAULT 0,
    CONSTRAINT debt_overdraft_within_limit CHECK (((debt_overdraft >= 0) AND (debt_overdraft <= overdraft_limit))),
    CONSTRAINT grant_floor CHECK ((((granted - used) - held) >= (- overdraft_limit))),
    CONSTRAINT grants_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(account_id),
    CONSTRAINT grants_granted_check CHECK ((granted >= 0)),
    CONSTRAINT grants_held_check CHECK ((held >= 0)),
    CONSTRAINT grants_overdraft_limit_check CHECK ((overdraft_limit >= 0)),
    CONSTRAINT grants_pkey PRIMARY KEY (grant_id)
);
CREATE INDEX grants_account ON grants USING btree (account_id);
CREATE INDEX grants_item ON grants USING btree (account_id, cycle_no) WHERE (item IS NOT NULL);

CREATE TABLE holds (
    hold_id text NOT NULL,
    account_id text NOT NULL,
    meter text NOT NULL,
    amount bigint NOT NULL,
    overage_units bigint NOT NULL DEFAULT 0,
    price_minor bigint NOT NULL DEFAULT 0,
    rows jsonb NOT NULL,
    dedup_key text,
    expires_at_ms bigint NOT NULL,
    status text NOT NULL DEFAULT 'open'::text,
    first_entry_id bigint,
    closed_at timestamp with time zone,
    CONSTRAINT holds_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(account_id),
    CONSTRAINT holds_pkey PRIMARY KEY (hold_id),
    CONSTRAINT holds_status_check CHECK ((status = ANY (ARRAY['open'::text, 'committed'::text, 'released'::text, 'expired'::text])))
);
CREATE INDEX holds_closed ON holds USING btree (closed_at) WHERE (status <> 'open'::text);
CREATE INDEX holds_open_account ON holds USING btree (account_id) WHERE (status = 'open'::text);
CREATE INDEX holds_open_due ON holds USING btree (expires_at_ms) WHERE (status = 'open'::text);

CREATE TABLE ledger (
    entry_id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,
    account_id text NOT NULL,
    kind text NOT NULL,
    grant_id text,
    bucket text,
    hold_id text,
    d_granted bigint NOT NULL DEFAULT 0,
    d_used bigint NOT NULL DEFAULT 0,
    d_held bigint NOT NULL DEFAULT 0,
    reverses_entry_id bigint,
    idempotency_key text,
    meter text,
    amount bigint,
    occurred_at timestamp with time zone NOT NULL,
    recorded_at timestamp with time zone NOT NULL DEFAULT now(),
    attrs jsonb,
    CONSTRAINT ledger_pkey PRIMARY KEY (entry_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX ledger_account_grant ON ONLY ledger USING btree (account_id, grant_id, occurred_at) WHERE (grant_id IS NOT NULL);
CREATE INDEX ledger_account_time ON ONLY ledger USING btree (account_id, occurred_at);
CREATE INDEX ledger_account_transactions ON ONLY ledger USING btree (account_id, occurred_at, entry_id) WHERE (kind <> ALL (ARRAY['reserve'::text, 'commit'::text, 'release'::text, 'consume'::text, 'expire'::text]));
CREATE INDEX ledger_charges ON ONLY ledger USING btree (account_id, occurred_at DESC, entry_id DESC) WHERE ((kind = ANY (ARRAY['consume'::text, 'commit'::text])) AND (d_used <> 0));
CREATE INDEX ledger_used_by_grant ON ONLY ledger USING btree (grant_id, entry_id) INCLUDE (d_used) WHERE (d_used <> 0);
CREATE TRIGGER ledger_append_only BEFORE TRUNCATE ON ledger FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_append_only_rows BEFORE DELETE OR UPDATE ON ledger FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE TABLE ledger_default PARTITION OF ledger DEFAULT;
CREATE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON ledger_default FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

CREATE TABLE operations (
    account_id text NOT NULL,
    idempotency_key text NOT NULL,
    kind text NOT NULL,
    request_hash text NOT NULL,
    response text NOT NULL,
    epoch bigint,
    seq bigint,
    created_at timestamp with time zone NOT NULL,
    CONSTRAINT operations_pkey PRIMARY KEY (account_id, idempotency_key)
);
CREATE INDEX operations_created ON operations USING btree (created_at);
CREATE UNIQUE INDEX operations_epoch_seq ON operations USING btree (account_id, epoch, seq) WHERE (seq IS NOT NULL);
CREATE TRIGGER operations_alerts AFTER INSERT ON operations FOR EACH ROW WHEN (((new.kind = ANY (ARRAY['reserve'::text, 'consume'::text, 'commit'::text])) AND (new.response ~~ '%"t":%'::text))) EXECUTE FUNCTION quota_record_alerts();

CREATE TABLE schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE service_secrets (
    name text NOT NULL,
    secret bytea NOT NULL,
    created_at timestamp with time zone NOT NULL DEFAULT now(),
    CONSTRAINT service_secrets_pkey PRIMARY KEY (name)
);

CREATE TABLE subscription_cycles (
    account_id text NOT NULL,
    cycle_no integer NOT NULL,
    product text NOT NULL,
    plan text NOT NULL,
    interval text NOT NULL,
    packs jsonb NOT NULL DEFAULT '{}'::jsonb,
    cycle_start_ms bigint NOT NULL,
    cycle_end_ms bigint NOT NULL,
    catalogue_version bigint NOT NULL,
    CONSTRAINT subscription_cycles_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(account_id),
    CONSTRAINT subscription_cycles_pkey PRIMARY KEY (account_id, cycle_no)
);

CREATE TABLE subscriptions (
    account_id text NOT NULL,
    product text NOT NULL,
    plan text NOT NULL,
    interval text NOT NULL,
    catalogue_version bigint NOT NULL,
    catalogue_hash text NOT NULL,
    packs jsonb NOT NULL DEFAULT '{}'::jsonb,
    anchor_at_ms bigint NOT NULL,
    cycle_no integer NOT NULL DEFAULT 0,
    cycle_start_ms bigint NOT NULL,
    cycle_end_ms bigint NOT NULL,
    status text NOT NULL DEFAULT 'active'::text,
    withheld jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamp with time zone NOT NULL,
    pending jsonb,
    anchor_cycle_no integer NOT NULL DEFAULT 0,
    CONSTRAINT subscriptions_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(account_id),
    CONSTRAINT subscriptions_check CHECK ((cycle_end_ms > cycle_start_ms)),
    CONSTRAINT subscriptions_pkey PRIMARY KEY (account_id),
    CONSTRAINT subscriptions_status_check CHECK ((status = ANY (ARRAY['active'::text, 'canceled'::text])))
);
CREATE INDEX subscriptions_due ON subscriptions USING btree (cycle_end_ms) WHERE (status = 'active'::text);

CREATE TABLE webhook_endpoints (
    endpoint_id text NOT NULL,
    org_id text,
    account_id text,
    url text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}'::text[],
    description text NOT NULL DEFAULT ''::text,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text,
    secret text NOT NULL,
    previous_secret text,
    previous_secret_until timestamp with time zone,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    CONSTRAINT webhook_endpoints_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(account_id) ON DELETE CASCADE,
    CONSTRAINT webhook_endpoints_check CHECK (((org_id IS NULL) <> (account_id IS NULL))),
    CONSTRAINT webhook_endpoints_check1 CHECK (((previous_secret IS NULL) = (previous_secret_until IS NULL))),
    CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (endpoint_id)
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints USING btree (account_id) WHERE (account_id IS NOT NULL);
CREATE INDEX webhook_endpoints_org ON webhook_endpoints USING btree (org_id) WHERE (org_id IS NOT NULL);
