-- quota_expire_holds, as it is now (first made by migrations/001_init.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Return holds whose time is up: an 'expire' ledger row per grant, stamped at the hold's expiry,
-- pointing back at the reservation. SKIP LOCKED makes it safe for several sweepers at once.
CREATE OR REPLACE FUNCTION quota_expire_holds(acct text, now_ms bigint) RETURNS integer LANGUAGE plpgsql AS $$
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
