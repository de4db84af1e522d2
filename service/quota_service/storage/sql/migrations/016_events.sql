-- Events (issue 12): a transactional outbox. Every change a platform may want to hear of (an alert
-- crossed or resolved, a top-up, a new cycle, a plan change, a status change) is a row written in
-- the same transaction as the ledger rows of its cause, so an event exists exactly when its cause
-- is durable. WatchAlerts streams them (resuming on event_seq); webhooks and email deliver them.

-- A stable public id: 'evt_' + 26 characters (Crockford base32: 10 of the time in ms, so ids sort
-- by time, then 16 random).
CREATE FUNCTION quota_event_id() RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    rnd bytea := uuid_send(gen_random_uuid());
    out text := 'evt_';
    i integer;
BEGIN
    FOR i IN REVERSE 9..0 LOOP
        out := out || substr(alphabet, ((ms >> (5 * i)) & 31)::integer + 1, 1);
    END LOOP;
    FOR i IN 0..15 LOOP
        out := out || substr(alphabet, (get_byte(rnd, i) & 31) + 1, 1);
    END LOOP;
    RETURN out;
END $$;

CREATE TABLE events (
    event_seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- increasing, in commit order
    event_id     text NOT NULL UNIQUE DEFAULT quota_event_id(),
    type         text NOT NULL,      -- alert.triggered | alert.resolved | balance.topped_up | cycle.rolled |
                                     -- plan.changed | account.status_changed
    account_id   text NOT NULL,
    org_id       text,
    occurred_at  timestamptz NOT NULL,
    data         jsonb NOT NULL      -- the event body's "data"
);
CREATE INDEX events_account ON events (account_id, event_seq);
CREATE INDEX events_org ON events (org_id, event_seq) WHERE org_id IS NOT NULL;
CREATE INDEX events_occurred ON events (occurred_at);

-- Events get their event_seq in commit order: a transaction that stores one holds this lock until
-- it ends, so the next takes its number only after the first is committed (or rolled back). A
-- reader that has seen event n can therefore never miss an event below n committed later. Writers
-- take the lock before any account row (quota_apply, the billing transactions), so it cannot
-- close a cycle of waits. The statement trigger fires before the row's identity value is drawn.
CREATE FUNCTION events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412015);
    RETURN NULL;
END $$;
CREATE TRIGGER events_in_commit_order BEFORE INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_in_commit_order();

-- Readers (WatchAlerts, the dispatcher) LISTEN on quota_events: the payload is the account.
CREATE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quota_events', NEW.account_id);
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION events_notify();

-- alert_events stays the once-per-cycle record of each threshold (the trigger on operations writes
-- it, and the event with it); resolved_at marks a threshold the meter was lifted back above (a
-- top-up, an adjustment, a new cycle: an alert.resolved event). An alert fires once per cycle (QA6).
ALTER TABLE alert_events ADD COLUMN resolved_at timestamptz;
DROP TRIGGER alert_events_in_commit_order ON alert_events;
DROP FUNCTION alert_events_in_commit_order();

-- The alert events stored so far become events with the same numbers, so a WatchAlerts caller
-- resumes where it was.
INSERT INTO events (event_seq, type, account_id, org_id, occurred_at, data) OVERRIDING SYSTEM VALUE
SELECT e.event_id, 'alert.triggered', e.account_id, e.org_id, e.occurred_at,
       jsonb_build_object('account_id', e.account_id, 'organization_id', COALESCE(e.org_id, ''), 'meter', e.meter,
                          'cycle_start_ms', e.cycle_start_ms, 'threshold_pct_left', e.threshold_pct_left,
                          'idempotency_key', e.idempotency_key)
  FROM alert_events e ORDER BY e.event_id;
SELECT setval(pg_get_serial_sequence('events', 'event_seq'), COALESCE(max(event_seq), 0) + 1, false) FROM events;
