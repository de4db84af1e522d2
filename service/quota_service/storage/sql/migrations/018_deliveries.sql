-- Deliveries (issue 12): one row per event and target (a webhook endpoint, or an email recipient),
-- made by a trigger on events in the event's own transaction; the dispatcher of every replica
-- claims due ones (FOR UPDATE SKIP LOCKED), sends them and records each attempt.
CREATE TABLE deliveries (
    delivery_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_seq        bigint NOT NULL REFERENCES events (event_seq) ON DELETE CASCADE,
    event_id         text NOT NULL,          -- = webhook-id: the same on every attempt and replay
    account_id       text NOT NULL,          -- the event's account: deliveries keep its order per target
    channel          text NOT NULL CHECK (channel IN ('webhook', 'email')),
    endpoint_id      text REFERENCES webhook_endpoints (endpoint_id) ON DELETE CASCADE,
    recipient        text,                   -- an email address (channel 'email')
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivered', 'failed', 'disabled')),
    attempts         integer NOT NULL DEFAULT 0,
    window_attempts  integer NOT NULL DEFAULT 0,  -- attempts in the current retry window (the backoff's n)
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- the first attempt (of the delivery, or since its replay; NULL: none yet): retries go on until
    -- window_start + the retry window, so time spent waiting behind an earlier event does not count
    window_start     timestamptz,
    last_status      integer,                -- the last attempt's HTTP status (0: no answer)
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    CHECK ((channel = 'webhook') = (endpoint_id IS NOT NULL)),
    CHECK ((channel = 'email') = (recipient IS NOT NULL))
);
-- an event reaches each target once (a replay sends the same row again)
CREATE UNIQUE INDEX deliveries_event_endpoint ON deliveries (event_seq, endpoint_id) WHERE endpoint_id IS NOT NULL;
CREATE UNIQUE INDEX deliveries_event_recipient ON deliveries (event_seq, recipient) WHERE recipient IS NOT NULL;
-- the dispatcher's claim: due pending deliveries, and the earlier pending ones of the same account and target
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_order ON deliveries (account_id, event_seq) WHERE status = 'pending';
-- ListDeliveries and replays, by endpoint or account
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, event_seq) WHERE endpoint_id IS NOT NULL;
CREATE INDEX deliveries_account ON deliveries (account_id, event_seq);

CREATE TABLE delivery_attempts (
    attempt_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES deliveries (delivery_id) ON DELETE CASCADE,
    attempted_at  timestamptz NOT NULL,
    status_code   integer NOT NULL,        -- the HTTP status (0: no answer: timeout, refused, closed)
    latency_ms    integer NOT NULL,
    response      text NOT NULL DEFAULT '', -- the first 1 KB of the answer's body
    error         text NOT NULL DEFAULT '', -- why there was no answer, or why it counts as failed
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'retried', 'failed', 'gone'))
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, attempt_id);

-- the fan-out (its definition in force is sql/functions/quota_fan_out_event.sql)
CREATE FUNCTION quota_fan_out_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (event_seq, event_id, account_id, channel, endpoint_id)
    SELECT NEW.event_seq, NEW.event_id, NEW.account_id, 'webhook', w.endpoint_id
      FROM webhook_endpoints w
     WHERE w.enabled
       AND (w.account_id = NEW.account_id OR (NEW.org_id IS NOT NULL AND w.org_id = NEW.org_id))
       AND (cardinality(w.event_types) = 0 OR NEW.type = ANY (w.event_types))
    ON CONFLICT DO NOTHING;
    IF jsonb_typeof(NEW.data -> 'notify') = 'array' AND (NEW.data -> 'notify') ? 'email' THEN
        INSERT INTO deliveries (event_seq, event_id, account_id, channel, recipient)
        SELECT NEW.event_seq, NEW.event_id, NEW.account_id, 'email', e.address
          FROM accounts a, unnest(a.billing_emails) AS e(address)
         WHERE a.account_id = NEW.account_id
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER events_fan_out AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION quota_fan_out_event();
