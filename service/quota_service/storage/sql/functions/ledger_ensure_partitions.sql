-- ledger_ensure_partitions, as it is now (first made by migrations/007_ledger_partitions.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Create the monthly partitions (UTC months) from the month of from_ts up to to_ts; returns how many
-- were created. A month with rows in ledger_default is left there.
CREATE OR REPLACE FUNCTION ledger_ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS integer
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
