-- The account's owner (KB5: "change the Bot Owner"): a user id of the caller's platform, changed
-- through ChangeOwner, idempotent and in the ledger (an 'owner_change' entry).
ALTER TABLE accounts ADD COLUMN owner_id text NOT NULL DEFAULT '';
