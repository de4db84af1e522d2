-- Plan changes (A1, KB5): upgrade now, downgrade (or fewer packs, FB6) at the cycle end.
-- `pending` holds a change that waits for the cycle end: {"plan", "interval", "packs", "key", "at_ms"}.
-- A change re-anchors the cycles when it starts a new cycle off the old rhythm (now, or another
-- interval): cycle n then runs from cycles.cycle(interval, anchor_at_ms, tz, n - anchor_cycle_no).
ALTER TABLE subscriptions ADD COLUMN pending jsonb,
                          ADD COLUMN anchor_cycle_no integer NOT NULL DEFAULT 0;

-- Every cycle a subscription had, with the plan it was billed by (statements of past cycles read
-- their bounds here: after a re-anchoring they cannot be computed from the current anchor).
CREATE TABLE subscription_cycles (
    account_id         text NOT NULL REFERENCES accounts (account_id),
    cycle_no           integer NOT NULL,
    product            text NOT NULL,
    plan               text NOT NULL,
    interval           text NOT NULL,
    packs              jsonb NOT NULL DEFAULT '{}',
    cycle_start_ms     bigint NOT NULL,
    cycle_end_ms       bigint NOT NULL,
    catalogue_version  bigint NOT NULL,
    PRIMARY KEY (account_id, cycle_no)
);
INSERT INTO subscription_cycles
SELECT account_id, cycle_no, product, plan, interval, packs, cycle_start_ms, cycle_end_ms, catalogue_version
  FROM subscriptions;
