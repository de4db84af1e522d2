-- ledger_append_only, as it is now (first made by migrations/001_init.sql).
-- Applied after the migrations at every start with CREATE OR REPLACE, which keeps the signature: a
-- change of arguments or result type needs a migration that drops the old function first.
--
-- The ledger is append-only: its triggers (on the table and on every partition) refuse UPDATE, DELETE
-- and TRUNCATE.
CREATE OR REPLACE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP;
END $$;
