-- Retention of events and deliveries (retention.py). A delivery is finished once it is no longer
-- pending (delivered, failed for good, or set aside because its endpoint was disabled): finished_at
-- says since when, in Postgres's time like every other delivery time, so its record is kept a known
-- time after that. A trigger keeps it, whoever changes the status: cleared when a replay makes the
-- delivery pending again.
ALTER TABLE deliveries ADD COLUMN finished_at timestamptz;
-- the deliveries finished before this migration: when they were delivered, or when their last attempt
-- was (or was due: one set aside unsent)
UPDATE deliveries SET finished_at = COALESCE(delivered_at, next_attempt_at) WHERE status <> 'pending';

CREATE FUNCTION deliveries_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.finished_at := CASE WHEN NEW.status = 'pending' THEN NULL ELSE now() END;
    RETURN NEW;
END $$;
CREATE TRIGGER deliveries_finished BEFORE UPDATE ON deliveries
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION deliveries_finished();

-- what the cleaner deletes, found by index: finished deliveries by age
CREATE INDEX deliveries_finished_at ON deliveries (finished_at) WHERE status <> 'pending';
-- the deliveries of an event: whether an event still has one (its retention), and the ON DELETE
-- CASCADE of events, which would otherwise scan deliveries for every event deleted
CREATE INDEX deliveries_event ON deliveries (event_seq);
