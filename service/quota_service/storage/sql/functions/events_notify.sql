-- events_notify, as it is now (first made by migrations/016_events.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Readers (WatchAlerts, the dispatcher) LISTEN on quota_events; the payload is the account.
CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quota_events', NEW.account_id);
    RETURN NULL;
END $$;
