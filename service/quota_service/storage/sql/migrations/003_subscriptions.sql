-- Subscriptions to catalogue plans and their billing cycles. One subscription per account.
-- Cycle n runs from cycle_start_ms to cycle_end_ms (exclusive); the cycler applies each plan
-- item's at-cycle-end rule at cycle_end_ms, even without traffic, and records it in the ledger.
CREATE TABLE subscriptions (
    account_id         text PRIMARY KEY REFERENCES accounts (account_id),
    product            text NOT NULL,
    plan               text NOT NULL,
    interval           text NOT NULL,
    -- the catalogue the subscription (and, after each cycle end, its latest cycle) was priced by
    catalogue_version  bigint NOT NULL,
    catalogue_hash     text NOT NULL,
    packs              jsonb NOT NULL DEFAULT '{}',  -- pack name -> quantity bought with the plan
    anchor_at_ms       bigint NOT NULL,              -- the subscription start; anchored cycles count from it
    cycle_no           integer NOT NULL DEFAULT 0,
    cycle_start_ms     bigint NOT NULL,
    cycle_end_ms       bigint NOT NULL CHECK (cycle_end_ms > cycle_start_ms),
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'canceled')),
    -- plan grant ids whose reset is withheld while a grant they depend on is negative (QA3c)
    withheld           jsonb NOT NULL DEFAULT '[]',
    created_at         timestamptz NOT NULL
);
CREATE INDEX subscriptions_due ON subscriptions (cycle_end_ms) WHERE status = 'active';

-- Which catalogue item a grant comes from ('plan:<grant id>', 'pack:<pack>', 'once:<grant id>'),
-- the cycle it belongs to (NULL: not tied to a cycle) and how often its remainder was carried over.
ALTER TABLE grants ADD COLUMN item text,
                   ADD COLUMN cycle_no integer,
                   ADD COLUMN carries integer NOT NULL DEFAULT 0;
CREATE INDEX grants_item ON grants (account_id, cycle_no) WHERE item IS NOT NULL;
