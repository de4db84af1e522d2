-- quota_apply_one, as it is now (first made by migrations/001_init.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Apply one mutation decided in Redis. Returns 'ok', 'dup' (idempotency key already used) or
-- 'stale' (made under an older epoch, a reused sequence number, or against a dedup mark Redis
-- did not know). Raises check_violation when a grant would go below its floor and QA001 when the
-- hold it resolves is no longer open; the caller turns both into a refusal.
CREATE OR REPLACE FUNCTION quota_apply_one(e jsonb) RETURNS text LANGUAGE plpgsql AS $$
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
