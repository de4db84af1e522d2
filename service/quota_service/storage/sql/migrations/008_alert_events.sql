-- Alerts (QA6, FB4, KB3): every threshold an answer crossed, stored once per billing cycle, for
-- subscribers of WatchAlerts. The answer the hot path stored (operations.response, the script's JSON)
-- lists them under "al"; a trigger turns them into events in the same transaction as the ledger
-- rows, so an event exists exactly when its charge is durable.
CREATE TABLE alert_events (
    event_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id          text NOT NULL,
    org_id              text,
    meter               text NOT NULL,
    threshold_pct_left  integer NOT NULL,   -- 0 = the meter ran out
    -- the subscription cycle the alert belongs to (its start; 0 for an account without one): an
    -- alert fires once per cycle
    cycle_start_ms      bigint NOT NULL,
    occurred_at         timestamptz NOT NULL,
    idempotency_key     text NOT NULL,      -- of the charge that crossed it
    UNIQUE (account_id, meter, threshold_pct_left, cycle_start_ms)
);
CREATE INDEX alert_events_org ON alert_events (org_id, event_id) WHERE org_id IS NOT NULL;
CREATE INDEX alert_events_account ON alert_events (account_id, event_id);

CREATE FUNCTION quota_record_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER operations_alerts AFTER INSERT ON operations
    -- cheap filter first: only an answer with an alert has a "t" (threshold) key
    FOR EACH ROW WHEN (NEW.kind IN ('reserve', 'consume', 'commit') AND NEW.response LIKE '%"t":%')
    EXECUTE FUNCTION quota_record_alerts();
