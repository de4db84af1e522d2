"""Quota enforcement service: atomic reservations in Redis, a durable ledger in Postgres."""

__version__ = "0.1.0"
