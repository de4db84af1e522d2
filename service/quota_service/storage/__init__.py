"""Adapters: Redis (the fast, rebuildable view) and Postgres (the ledger, the source of truth)."""
