-- deliveries_finished, as it is now (first made by migrations/019_event_retention.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- When a delivery's status changes (trigger deliveries_finished): finished_at is when it stopped
-- being pending (delivered, failed, disabled), NULL while it is pending (a replay). Retention keeps a
-- finished delivery QUOTA_DELIVERY_RETENTION_DAYS from then.
CREATE OR REPLACE FUNCTION deliveries_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.finished_at := CASE WHEN NEW.status = 'pending' THEN NULL ELSE now() END;
    RETURN NEW;
END $$;
