-- A debt's floor (QC7, QA3c). An adjustment may take a grant below its floor; its overdraft limit then
-- follows the debt so nothing new is charged to it. `debt_overdraft` is the part of `overdraft_limit`
-- that exists only because of such a debt: when a top-up or a settlement pays the debt, the limit
-- shrinks back to the grant's own overdraft (`overdraft_limit - debt_overdraft`), so a paid debt never
-- reopens as room to spend.
ALTER TABLE grants ADD COLUMN debt_overdraft bigint NOT NULL DEFAULT 0
    CONSTRAINT debt_overdraft_within_limit CHECK (debt_overdraft >= 0 AND debt_overdraft <= overdraft_limit);

-- The self_service role (QC13): a customer's own key, which may make the catalogue's self-service
-- top-ups of its one account and nothing else.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_roles_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_roles_check
    CHECK (roles <@ ARRAY['enforce', 'read', 'admin', 'self_service']::text[] AND cardinality(roles) > 0);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_self_service_scope
    CHECK (NOT roles @> ARRAY['self_service']::text[]
           OR (cardinality(accounts) = 1 AND accounts[1] <> '*' AND cardinality(orgs) = 0));
