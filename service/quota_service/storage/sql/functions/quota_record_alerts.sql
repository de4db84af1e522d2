-- quota_record_alerts, as it is now (first made by migrations/008_alert_events.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Alerts (QA6, FB4, KB3): the thresholds an answer crossed (operations.response, under "al") become
-- alert events in the same transaction as the ledger rows, once per billing cycle (QA6: not again
-- after a top-up lifted the meter back above it, alert_events.resolved_at). Each new one is also an
-- `alert.triggered` event (table events) with what the catalogue says of it, read from the
-- account's policy of the meter (accounts.policies: "an" the notify channels per threshold, "anm"
-- the alert names, "x" the exhausted action): the percent left and remaining from the answer, the
-- granted units from the meter's live grants (a charge does not change them).
CREATE OR REPLACE FUNCTION quota_record_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    resp jsonb := NEW.response::jsonb;
    a jsonb;
    t integer;
    cyc bigint;
    org text;
    pols jsonb;
    p jsonb;
    granted bigint;
    t_ms bigint := (extract(epoch FROM NEW.created_at) * 1000)::bigint;
    n integer;
BEGIN
    IF jsonb_typeof(resp -> 'al') IS DISTINCT FROM 'array' OR jsonb_array_length(resp -> 'al') = 0 THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE((SELECT cycle_start_ms FROM subscriptions s WHERE s.account_id = NEW.account_id), 0),
           x.org_id, x.policies
      INTO cyc, org, pols
      FROM accounts x WHERE x.account_id = NEW.account_id;
    FOR a IN SELECT value FROM jsonb_array_elements(resp -> 'al') LOOP
        t := (a->>'t')::integer;
        INSERT INTO alert_events (account_id, org_id, meter, threshold_pct_left, cycle_start_ms, occurred_at,
                                        idempotency_key)
        VALUES (NEW.account_id, org, a->>'m', t, cyc, NEW.created_at, NEW.idempotency_key)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        CONTINUE WHEN n = 0;
        p := COALESCE(pols -> (a->>'m'), '{}'::jsonb);
        SELECT COALESCE(sum(g.granted), 0) INTO granted FROM grants g
         WHERE g.account_id = NEW.account_id AND g.bucket = a->>'m' AND g.starts_at_ms <= t_ms
           AND (g.expires_at_ms = 0 OR g.expires_at_ms > t_ms);
        INSERT INTO events (type, account_id, org_id, occurred_at, data)
        VALUES ('alert.triggered', NEW.account_id, org, NEW.created_at, jsonb_build_object(
            'account_id', NEW.account_id, 'organization_id', COALESCE(org, ''), 'meter', a->>'m',
            'cycle_start_ms', cyc, 'threshold_pct_left', t,
            'percent_left', round(COALESCE((resp->>'pct')::numeric, 0), 2),
            'remaining', COALESCE((resp->>'rem')::bigint, 0), 'granted', granted,
            'alert_name', COALESCE(p -> 'anm' ->> t::text, CASE WHEN t = 0 THEN 'exhausted' ELSE t || '_pct_left' END),
            'notify', COALESCE(p -> 'an' -> t::text, '[]'::jsonb),
            'exhausted_action', COALESCE((ARRAY['NONE', 'HANDOFF_TO_AGENT', 'DISABLE_WIDGET'])[(p->>'x')::integer + 1],
                                         'NONE'),
            'idempotency_key', NEW.idempotency_key));
    END LOOP;
    RETURN NULL;
END $$;
