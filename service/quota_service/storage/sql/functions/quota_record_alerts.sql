-- quota_record_alerts, as it is now (first made by migrations/008_alert_events.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Alerts (QA6, FB4, KB3): the thresholds an answer crossed (operations.response, under "al") become
-- alert events in the same transaction as the ledger rows, once per billing cycle; WatchAlerts
-- subscribers hear of them through pg_notify('quota_alerts').
CREATE OR REPLACE FUNCTION quota_record_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    al jsonb;
    a jsonb;
    cyc bigint;
    org text;
    n integer;
    made integer := 0;
BEGIN
    al := NEW.response::jsonb -> 'al';
    IF al IS NULL OR jsonb_typeof(al) <> 'array' OR jsonb_array_length(al) = 0 THEN
        RETURN NULL;
    END IF;
    SELECT COALESCE((SELECT cycle_start_ms FROM subscriptions s WHERE s.account_id = NEW.account_id), 0),
           (SELECT org_id FROM accounts x WHERE x.account_id = NEW.account_id)
      INTO cyc, org;
    FOR a IN SELECT value FROM jsonb_array_elements(al) LOOP
        INSERT INTO alert_events (account_id, org_id, meter, threshold_pct_left, cycle_start_ms, occurred_at,
                                  idempotency_key)
        VALUES (NEW.account_id, org, a->>'m', (a->>'t')::integer, cyc, NEW.created_at, NEW.idempotency_key)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        made := made + n;
    END LOOP;
    IF made > 0 THEN
        PERFORM pg_notify('quota_alerts', NEW.account_id);
    END IF;
    RETURN NULL;
END $$;
