-- Secrets of the deployment, made once and shared by every replica (the page tokens' signing key
-- when QUOTA_PAGE_TOKEN_SECRET is not set).
CREATE TABLE service_secrets (
    name        text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Retention (retention.py): what the cleaner deletes, found by index rather than by a scan.
CREATE INDEX operations_created ON operations (created_at);
CREATE INDEX holds_closed ON holds (closed_at) WHERE status <> 'open';
CREATE INDEX dedup_marks_window_end ON dedup_marks (window_end_ms);
CREATE INDEX alert_events_occurred ON alert_events (occurred_at);

-- Alert events get their event_id in commit order: a transaction that stores one holds this lock
-- until it ends, so the next takes its id only after the first is committed (or rolled back). A
-- WatchAlerts reader that has seen event n can therefore never miss an event below n committed
-- later. Alerts are rare (once per threshold and cycle), so the wait is rare too. The statement
-- trigger fires before the row's identity value is drawn.
CREATE FUNCTION alert_events_in_commit_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7412015);
    RETURN NULL;
END $$;
CREATE TRIGGER alert_events_in_commit_order BEFORE INSERT ON alert_events
    FOR EACH STATEMENT EXECUTE FUNCTION alert_events_in_commit_order();
