"""The ledger operations a billing planner returns, applied in order by ``storage.billing``.

Amounts are whole units of the grant's bucket (a meter's units, or a currency's minor unit for a
wallet ``$IDR``); times are milliseconds since the epoch. Every operation names the account it
belongs to once, in the call that applies it, not in each operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """An append-only ledger line written outside the hot path (cycle ends, settlements, top-ups)."""

    kind: str
    grant_id: str | None
    bucket: str
    at_ms: int
    d_granted: int = 0
    d_used: int = 0
    amount: int = 0
    attrs: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None


@dataclass(frozen=True)
class NewGrant:
    """A grant to create. Its id is derived from what it is for, so it exists at most once: when the
    id is already taken nothing is written, neither the grant nor its ``entries``."""

    grant_id: str
    bucket: str
    source: str
    label: str
    priority: int
    starts_ms: int
    expires_ms: int
    granted: int
    item: str
    cycle_no: int | None
    used: int = 0
    overdraft: int = 0
    carries: int = 0
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class MoveGranted:
    """Add ``delta`` (may be negative) to a grant's granted units."""

    grant_id: str
    delta: int


@dataclass(frozen=True)
class MoveUsed:
    """Add ``delta`` (may be negative) to a grant's used units."""

    grant_id: str
    delta: int


@dataclass(frozen=True)
class EndGrant:
    """The grant stops counting at ``at_ms`` (its expiry is moved there)."""

    grant_id: str
    at_ms: int


@dataclass(frozen=True)
class SetDebtOverdraft:
    """The overdraft an adjustment opened for a debt, carried to the grant that now holds the debt."""

    grant_id: str
    amount: int


@dataclass(frozen=True)
class FloorFollowsDebt:
    """After a debt shrank, the grant's floor shrinks back with it (a paid debt is no room to spend)."""

    grant_id: str


@dataclass(frozen=True)
class BumpEpoch:
    """Fence the account's Redis state: decisions made against the old state are decided again."""


Op = Entry | NewGrant | MoveGranted | MoveUsed | EndGrant | SetDebtOverdraft | FloorFollowsDebt | BumpEpoch
