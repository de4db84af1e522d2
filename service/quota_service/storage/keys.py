"""Every Redis key the service passes to a script is built here (a script derives only the dedup
marks of keys it makes itself, in the same form: lua/_prelude.lua, dedup_key_name). An account's
keys share its {hash tag}, so each script's keys live in one cluster slot (N8). The keys, their
types and their fields: lua/README.md."""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "q") -> None:
        self.prefix = prefix

    def account(self, account_id: str) -> list[str]:
        """The five keys of an account's state, in the order the scripts expect: meta, grants, holds,
        hold expiries, pending mutations (see lua/_prelude.lua)."""
        base = f"{self.prefix}:{{{account_id}}}"
        return [f"{base}:m", f"{base}:g", f"{base}:h", f"{base}:x", f"{base}:p"]

    def idempotency(self, account_id: str, key: str) -> str:
        """The record of an idempotency key: its request fingerprint, state and answer."""
        return f"{self.prefix}:{{{account_id}}}:i:{key}"

    def dedup(self, account_id: str, meter: str, dedup_key: str) -> str:
        """A dedup mark: the business key `dedup_key` of `meter`, charged once per window."""
        return f"{self.prefix}:{{{account_id}}}:d:{meter}:{dedup_key}"
