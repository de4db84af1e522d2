"""The ledger operations a billing planner returns, applied in order by ``storage.billing``.

Amounts are whole units of the grant's bucket (a meter's units, or a currency's minor unit for a
wallet ``$IDR``); times are milliseconds since the epoch. Every operation names the account it
belongs to once, in the call that applies it, not in each operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quota_service.domain.model import MeterPolicy


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
    item: str | None  # the catalogue entry it is for; None: an ad-hoc top-up
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


# Operations on the subscription and the account (cycle ends, plan changes, subscribing).


@dataclass(frozen=True)
class SetPolicies:
    """The account's meter policies as the hot path enforces them, replaced as a whole."""

    policies: Mapping[str, MeterPolicy]


@dataclass(frozen=True)
class NewSubscription:
    """The account's subscription, starting with cycle 0 (nothing written if it already has one)."""

    product: str
    plan: str
    interval: str
    catalogue_version: int
    catalogue_hash: str
    packs: Mapping[str, int]
    anchor_at_ms: int
    cycle_start_ms: int
    cycle_end_ms: int
    created_ms: int


@dataclass(frozen=True)
class NextCycle:
    """The subscription moves to a new cycle, billed by the plan named here; a pending change is done."""

    cycle_no: int
    start_ms: int
    end_ms: int
    withheld: tuple[str, ...]
    catalogue_version: int
    catalogue_hash: str
    plan: str
    interval: str
    packs: Mapping[str, int]
    anchor_at_ms: int
    anchor_cycle_no: int


@dataclass(frozen=True)
class RecordCycle:
    """The history row of a cycle (its end is updated when the row exists)."""

    cycle_no: int
    product: str
    plan: str
    interval: str
    packs: Mapping[str, int]
    start_ms: int
    end_ms: int
    catalogue_version: int


@dataclass(frozen=True)
class CutCycle:
    """The history row of cycle ``cycle_no`` ends at ``at_ms`` (a change applied now, an extension)."""

    cycle_no: int
    at_ms: int


@dataclass(frozen=True)
class ExpireCycleGrants:
    """Every grant of cycle ``cycle_no`` that runs past ``at_ms`` stops counting there."""

    cycle_no: int
    at_ms: int


@dataclass(frozen=True)
class MoveCycleEnd:
    """The current cycle ends at ``to_ms`` instead of ``from_ms``: its grants that expired with it
    move too, and the next cycles count from the new end (cycle ``cycle_no`` + 1 is the anchor)."""

    cycle_no: int
    from_ms: int
    to_ms: int


@dataclass(frozen=True)
class SetWithheld:
    """The plan grant ids whose reset is withheld while an item they depend on is negative (QA3c)."""

    withheld: tuple[str, ...]


@dataclass(frozen=True)
class SetPacks:
    """The packs of the subscription (pack name -> quantity)."""

    packs: Mapping[str, int]


@dataclass(frozen=True)
class SetPending:
    """A change waiting for the cycle end (plan, interval, packs, requested_at_ms); None cancels it."""

    pending: Mapping[str, Any] | None


SubscriptionOp = (SetPolicies | NewSubscription | NextCycle | RecordCycle | CutCycle | ExpireCycleGrants | MoveCycleEnd
                  | SetWithheld | SetPacks | SetPending)


@dataclass(frozen=True)
class OpenDebtFloor:
    """An adjustment took the grant below its floor: the floor opens to the debt (``debt`` units), and
    the part opened only for the debt is recorded (``debt_overdraft``) so it closes again as it is paid."""

    grant_id: str
    debt: int


# Events (domain/events.py): written in the transaction of their cause.


@dataclass(frozen=True)
class RecordEvent:
    """An event of ``type`` at ``at_ms``: ``data`` holds its type's fields; the account, its
    organization and the current cycle's start are added where they are not given."""

    type: str
    at_ms: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ResolveAlert:
    """The meter is back above the threshold: the alert is resolved (it fires once per cycle all the same, QA6)."""

    meter: str
    threshold_pct_left: int
    cycle_start_ms: int
    at_ms: int


Op = (Entry | NewGrant | MoveGranted | MoveUsed | EndGrant | SetDebtOverdraft | FloorFollowsDebt | BumpEpoch
      | SubscriptionOp | OpenDebtFloor | RecordEvent | ResolveAlert)
