-- Accounts, grants (with the balance projection), holds, dedup marks, the idempotency table and the
-- append-only ledger. Amounts are bigint units, or minor units of money for wallet buckets ("$IDR").
-- Times from the service clock are bigint milliseconds since the epoch (*_ms) or timestamptz.

CREATE TABLE accounts (
    account_id  text PRIMARY KEY,
    org_id      text,
    time_zone   text NOT NULL DEFAULT 'UTC',
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'expired')),
    policies    jsonb NOT NULL DEFAULT '{}',
    -- Fencing token of the account's Redis state: every rebuild increments it, and a mutation made
    -- under an older epoch is refused.
    epoch       bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL
);
CREATE INDEX accounts_org ON accounts (org_id) WHERE org_id IS NOT NULL;

CREATE TABLE grants (
    grant_id         text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES accounts (account_id),
    bucket           text NOT NULL,
    source           text NOT NULL,
    label            text NOT NULL DEFAULT '',
    priority         integer NOT NULL,
    ord              bigint GENERATED ALWAYS AS IDENTITY,
    starts_at_ms     bigint NOT NULL,
    expires_at_ms    bigint NOT NULL DEFAULT 0,
    granted          bigint NOT NULL CHECK (granted >= 0),
    used             bigint NOT NULL DEFAULT 0,
    held             bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    overdraft_limit  bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    -- Postgres is the arbiter: whatever Redis decided, no grant goes below its floor.
    CONSTRAINT grant_floor CHECK (granted - used - held >= -overdraft_limit)
);
CREATE INDEX grants_account ON grants (account_id);

CREATE TABLE holds (
    hold_id         text PRIMARY KEY,
    account_id      text NOT NULL REFERENCES accounts (account_id),
    meter           text NOT NULL,
    amount          bigint NOT NULL,
    overage_units   bigint NOT NULL DEFAULT 0,
    price_minor     bigint NOT NULL DEFAULT 0,
    rows            jsonb NOT NULL,
    dedup_key       text,
    expires_at_ms   bigint NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'committed', 'released', 'expired')),
    first_entry_id  bigint,
    closed_at       timestamptz
);
CREATE INDEX holds_open_due ON holds (expires_at_ms) WHERE status = 'open';
CREATE INDEX holds_open_account ON holds (account_id) WHERE status = 'open';

CREATE TABLE dedup_marks (
    account_id     text NOT NULL,
    meter          text NOT NULL,
    dedup_key      text NOT NULL,
    window_end_ms  bigint NOT NULL,
    hold_id        text,
    PRIMARY KEY (account_id, meter, dedup_key)
);

CREATE TABLE operations (
    account_id       text NOT NULL,
    idempotency_key  text NOT NULL,
    kind             text NOT NULL,
    request_hash     text NOT NULL,
    response         text NOT NULL,
    epoch            bigint,
    seq              bigint,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (account_id, idempotency_key)
);
-- Two mutations can never share a Redis sequence number within an epoch; a Redis that lost
-- acknowledged writes (stale replica) reuses one and is caught here.
CREATE UNIQUE INDEX operations_epoch_seq ON operations (account_id, epoch, seq) WHERE seq IS NOT NULL;

CREATE TABLE ledger (
    entry_id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id         text NOT NULL,
    kind               text NOT NULL,
    grant_id           text,
    bucket             text,
    hold_id            text,
    d_granted          bigint NOT NULL DEFAULT 0,
    d_used             bigint NOT NULL DEFAULT 0,
    d_held             bigint NOT NULL DEFAULT 0,
    reverses_entry_id  bigint,
    idempotency_key    text,
    meter              text,
    amount             bigint,
    occurred_at        timestamptz NOT NULL,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    attrs              jsonb
);
CREATE INDEX ledger_account_time ON ledger (account_id, occurred_at);

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP;
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Return holds whose time is up: an 'expire' ledger row per grant, stamped at the hold's expiry,
-- pointing back at the reservation. SKIP LOCKED makes it safe for several sweepers at once.
CREATE FUNCTION quota_expire_holds(acct text, now_ms bigint) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    h holds%ROWTYPE;
    n integer := 0;
BEGIN
    FOR h IN SELECT * FROM holds
              WHERE account_id = acct AND status = 'open' AND expires_at_ms <= now_ms
              ORDER BY expires_at_ms FOR UPDATE SKIP LOCKED LOOP
        INSERT INTO ledger (account_id, kind, grant_id, bucket, hold_id, d_held, reverses_entry_id,
                            meter, amount, occurred_at)
        SELECT acct, 'expire', r->>'g', r->>'b', h.hold_id, -(r->>'a')::bigint, h.first_entry_id,
               h.meter, h.amount, to_timestamp(h.expires_at_ms / 1000.0)
          FROM jsonb_array_elements(h.rows) AS r;
        UPDATE grants g SET held = g.held - d.a
          FROM (SELECT r->>'g' AS gid, sum((r->>'a')::bigint) AS a
                  FROM jsonb_array_elements(h.rows) AS r GROUP BY 1) d
         WHERE g.grant_id = d.gid AND g.account_id = acct;
        UPDATE holds SET status = 'expired', closed_at = to_timestamp(h.expires_at_ms / 1000.0)
         WHERE hold_id = h.hold_id;
        DELETE FROM dedup_marks WHERE account_id = acct AND hold_id = h.hold_id;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Apply one mutation decided in Redis. Returns 'ok', 'dup' (idempotency key already used) or
-- 'stale' (made under an older epoch, a reused sequence number, or against a dedup mark Redis
-- did not know). Raises check_violation when a grant would go below its floor and QA001 when the
-- hold it resolves is no longer open; the caller turns both into a refusal.
CREATE FUNCTION quota_apply_one(e jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    acct      text := e->>'a';
    t_ms      bigint := (e->>'t')::bigint;
    ts        timestamptz := to_timestamp((e->>'t')::bigint / 1000.0);
    cur       bigint;
    n         integer;
    hold_ref  bigint;
    first_id  bigint;
    v_hold    text := COALESCE(e->'hold'->>'id', e->>'close');
BEGIN
    SELECT epoch INTO cur FROM accounts WHERE account_id = acct FOR SHARE;
    IF cur IS DISTINCT FROM (e->>'ep')::bigint THEN
        RETURN 'stale';
    END IF;
    INSERT INTO operations (account_id, idempotency_key, kind, request_hash, response, epoch, seq, created_at)
    VALUES (acct, e->>'k', e->>'op', e->>'h', e->>'r', (e->>'ep')::bigint, (e->>'sq')::bigint, ts)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        IF EXISTS (SELECT 1 FROM operations WHERE account_id = acct AND idempotency_key = e->>'k') THEN
            RETURN 'dup';
        END IF;
        RETURN 'stale';
    END IF;
    IF e ? 'close' THEN
        UPDATE holds SET status = CASE WHEN e->>'op' = 'release' THEN 'released' ELSE 'committed' END,
                         closed_at = ts
         WHERE account_id = acct AND holds.hold_id = e->>'close' AND status = 'open'
        RETURNING first_entry_id INTO hold_ref;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold % is not open', e->>'close' USING ERRCODE = 'QA001';
        END IF;
        IF e->>'op' = 'release' OR (e->>'amt')::bigint = 0 THEN
            DELETE FROM dedup_marks WHERE account_id = acct AND dedup_marks.hold_id = e->>'close';
        END IF;
    END IF;
    WITH ins AS (
        INSERT INTO ledger (account_id, kind, grant_id, bucket, hold_id, d_used, d_held,
                            reverses_entry_id, idempotency_key, meter, amount, occurred_at, attrs)
        SELECT acct, e->>'op', r->>'g', r->>'b', v_hold, (r->>'du')::bigint, (r->>'dh')::bigint,
               hold_ref, e->>'k', e->>'m', (e->>'amt')::bigint, ts, e->'attrs'
          FROM jsonb_array_elements(e->'rows') WITH ORDINALITY AS x(r, i)
         ORDER BY i
        RETURNING entry_id
    )
    SELECT min(entry_id) INTO first_id FROM ins;
    UPDATE grants g SET used = g.used + d.du, held = g.held + d.dh
      FROM (SELECT r->>'g' AS gid, sum((r->>'du')::bigint) AS du, sum((r->>'dh')::bigint) AS dh
              FROM jsonb_array_elements(e->'rows') AS r GROUP BY 1) d
     WHERE g.grant_id = d.gid AND g.account_id = acct;
    IF e ? 'hold' THEN
        INSERT INTO holds (hold_id, account_id, meter, amount, overage_units, price_minor, rows,
                           dedup_key, expires_at_ms, first_entry_id)
        VALUES (e->'hold'->>'id', acct, e->>'m', (e->>'amt')::bigint, (e->'hold'->>'ou')::bigint,
                (e->'hold'->>'pr')::bigint, e->'hold'->'rows', e->'dd'->>'k',
                (e->'hold'->>'exp')::bigint, first_id);
    END IF;
    IF e ? 'dd' THEN
        INSERT INTO dedup_marks AS d (account_id, meter, dedup_key, window_end_ms, hold_id)
        VALUES (acct, e->>'m', e->'dd'->>'k', (e->'dd'->>'end')::bigint, e->'hold'->>'id')
        ON CONFLICT (account_id, meter, dedup_key) DO UPDATE
            SET window_end_ms = EXCLUDED.window_end_ms, hold_id = EXCLUDED.hold_id
            WHERE d.window_end_ms <= t_ms;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF n = 0 THEN
            RAISE EXCEPTION 'dedup key already charged' USING ERRCODE = 'QA002';
        END IF;
    END IF;
    RETURN 'ok';
END $$;

-- Apply a batch in one round trip. Each entry runs in its own subtransaction, so a refused entry
-- leaves the others intact. Returns one row per entry: its index, status and, for 'dup', the
-- stored request hash and answer.
CREATE FUNCTION quota_apply(batch jsonb)
RETURNS TABLE (idx integer, status text, request_hash text, response text)
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    i integer := 0;
BEGIN
    FOR e IN SELECT value FROM jsonb_array_elements(batch) LOOP
        idx := i;
        request_hash := NULL;
        response := NULL;
        BEGIN
            status := quota_apply_one(e);
        EXCEPTION
            WHEN check_violation THEN
                -- A hold past its time may still count as held here while Redis already returned
                -- it: expire the account's due holds and try once more.
                IF quota_expire_holds(e->>'a', (e->>'t')::bigint) > 0 THEN
                    BEGIN
                        status := quota_apply_one(e);
                    EXCEPTION
                        WHEN check_violation THEN status := 'floor';
                        WHEN SQLSTATE 'QA001' THEN status := 'closed';
                        WHEN SQLSTATE 'QA002' THEN status := 'stale';
                    END;
                ELSE
                    status := 'floor';
                END IF;
            WHEN SQLSTATE 'QA001' THEN status := 'closed';
            WHEN SQLSTATE 'QA002' THEN status := 'stale';
        END;
        IF status = 'dup' THEN
            SELECT o.request_hash, o.response INTO request_hash, response
              FROM operations o WHERE o.account_id = e->>'a' AND o.idempotency_key = e->>'k';
        END IF;
        RETURN NEXT;
        i := i + 1;
    END LOOP;
END $$;
