-- The ledger partitioned by month of occurred_at (N8): a report over a period reads only the months
-- it covers, and old months can be archived by detaching them. Same columns, same append-only rule.
-- Months outside the partitions go to ledger_default; ledger_ensure_partitions() creates the months
-- ahead (the service calls it at start and every hour) and never a month that already has rows in
-- the default partition (Postgres would refuse it).

ALTER TABLE ledger RENAME TO ledger_v1;
ALTER TABLE ledger_v1 RENAME CONSTRAINT ledger_pkey TO ledger_v1_pkey;
DROP TRIGGER ledger_append_only ON ledger_v1;

CREATE TABLE ledger (
    entry_id           bigint GENERATED ALWAYS AS IDENTITY,
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
    attrs              jsonb,
    PRIMARY KEY (entry_id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE ledger_default PARTITION OF ledger DEFAULT;
-- Append-only on every partition too: a row trigger on the parent is cloned to each partition;
-- TRUNCATE triggers are per table (ledger_ensure_partitions adds one to each month).
CREATE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON ledger_default
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Create the monthly partitions (UTC months) from the month of from_ts up to to_ts; returns how many
-- were created. A month with rows in ledger_default is left there.
CREATE FUNCTION ledger_ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    m timestamptz := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    nxt timestamptz;
    name text;
    made integer := 0;
BEGIN
    WHILE m < to_ts LOOP
        nxt := ((m AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        name := 'ledger_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM');
        IF to_regclass(name) IS NULL
           AND NOT EXISTS (SELECT 1 FROM ledger_default WHERE occurred_at >= m AND occurred_at < nxt) THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF ledger FOR VALUES FROM (%L) TO (%L)', name, m, nxt);
            EXECUTE format('CREATE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON %I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only()', name);
            made := made + 1;
        END IF;
        m := nxt;
    END LOOP;
    RETURN made;
END $$;

-- Months for the rows there are (within two years of now) and three months ahead.
DO $$
DECLARE
    lo timestamptz;
BEGIN
    SELECT min(occurred_at) INTO lo FROM ledger_v1 WHERE occurred_at > now() - interval '2 years';
    PERFORM ledger_ensure_partitions(least(COALESCE(lo, now()), now() - interval '1 month'),
                                     now() + interval '3 months');
END $$;

-- The indexes of the old table, on the new one (partitioned indexes cover every month).
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT indexname, indexdef FROM pg_indexes
              WHERE schemaname = current_schema() AND tablename = 'ledger_v1' AND indexname <> 'ledger_v1_pkey' LOOP
        EXECUTE format('DROP INDEX %I', r.indexname);
        EXECUTE replace(r.indexdef, ' ON ' || current_schema() || '.ledger_v1 ', ' ON ' || current_schema() || '.ledger ');
    END LOOP;
END $$;

INSERT INTO ledger (entry_id, account_id, kind, grant_id, bucket, hold_id, d_granted, d_used, d_held,
                    reverses_entry_id, idempotency_key, meter, amount, occurred_at, recorded_at, attrs)
OVERRIDING SYSTEM VALUE
SELECT entry_id, account_id, kind, grant_id, bucket, hold_id, d_granted, d_used, d_held,
       reverses_entry_id, idempotency_key, meter, amount, occurred_at, recorded_at, attrs
  FROM ledger_v1;
SELECT setval(pg_get_serial_sequence('ledger', 'entry_id'), COALESCE((SELECT max(entry_id) FROM ledger_v1), 0) + 1,
              false);
DROP TABLE ledger_v1;

CREATE TRIGGER ledger_append_only BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_append_only_rows BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
