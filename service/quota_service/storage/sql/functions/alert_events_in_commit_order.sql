-- alert_events_in_commit_order, as it is now (first made by migrations/015_retention.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Alert events get their event_id in commit order: a transaction that stores one holds this lock
-- until it ends, so the next takes its id only after the first is committed (or rolled back). A
-- WatchAlerts reader that has seen event n can therefore never miss an event below n committed
-- later. Alerts are rare (once per threshold and cycle), so the wait is rare too. The statement
-- trigger fires before the row's identity value is drawn.
CREATE OR REPLACE FUNCTION alert_events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412015);
    RETURN NULL;
END $$;
