-- events_in_commit_order, as it is now (first made by migrations/016_events.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- Events get their event_seq in commit order: a transaction that stores one holds this lock until
-- it ends, so the next takes its number only after the first is committed (or rolled back). A
-- reader that has seen event n can therefore never miss an event below n committed later. Writers
-- take the lock before any account row (quota_apply, the billing transactions: storage/billing.py
-- lock_events), so it cannot close a cycle of waits.
CREATE OR REPLACE FUNCTION events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412015);
    RETURN NULL;
END $$;
