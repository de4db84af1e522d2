"""Every Redis key is built here. An account's keys share its {hash tag}, so each script's keys
live in one cluster slot (N8)."""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "q") -> None:
        self.prefix = prefix

    def account(self, account_id: str) -> list[str]:
        """The five keys of an account's state, in the order the scripts expect (see lua/_prelude.lua)."""
        base = f"{self.prefix}:{{{account_id}}}"
        return [f"{base}:m", f"{base}:g", f"{base}:h", f"{base}:x", f"{base}:p"]

    def idempotency(self, account_id: str, key: str) -> str:
        return f"{self.prefix}:{{{account_id}}}:i:{key}"

    def dedup(self, account_id: str, meter: str, dedup_key: str) -> str:
        return f"{self.prefix}:{{{account_id}}}:d:{meter}:{dedup_key}"
