-- Fan-out of an event (migration 018): one delivery per matching enabled webhook endpoint (an
-- endpoint of the event's account or of its organization, listing the event's type or every type),
-- and, when the event's "notify" names "email", one per billing contact of the account. A trigger
-- on events: the deliveries are written in the transaction of the event, so none can be lost
-- between the two.
CREATE OR REPLACE FUNCTION quota_fan_out_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
