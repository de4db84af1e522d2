-- quota_apply, as it is now (first made by migrations/001_init.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Apply a batch in one round trip. Each entry runs in its own subtransaction, so a refused entry
-- leaves the others intact. Returns one row per entry: its index, status and, for 'dup', the
-- stored request hash and answer. A batch with an alert (an answer listing crossed thresholds) takes
-- the events lock first, before any account row (see events_in_commit_order).
CREATE OR REPLACE FUNCTION quota_apply(batch jsonb)
RETURNS TABLE (idx integer, status text, request_hash text, response text)
LANGUAGE plpgsql AS $$
DECLARE
    e jsonb;
    i integer := 0;
BEGIN
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(batch) x
                WHERE x.value->>'op' IN ('reserve', 'consume', 'commit') AND x.value->>'r' LIKE '%"t":%') THEN
        PERFORM pg_advisory_xact_lock(7412015);
    END IF;
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
