"""The arithmetic of the account reports, pure: no I/O, no clock. Amounts are int units, or minor units
for a wallet bucket ("$" + currency).

A grant comes to exist with its first ledger row (``created_ms``) and ends at ``expires_at_ms`` (0 =
never). Rows stamped exactly at a cycle boundary b belong to the cycle that starts at b, except the
*cycle-end entries* of grants that ended at b (forfeits, carry-outs, holds returned at b): those close
the cycle that ended there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from quota_service.reports.model import StatementLine

# the rows the hot path writes (one per grant touched); every other row that names a bucket is a transaction
USAGE_KINDS = ("reserve", "commit", "release", "consume", "expire")


@dataclass(frozen=True)
class GrantInfo:
    grant_id: str
    bucket: str
    source: str
    label: str
    priority: int
    starts_at_ms: int
    expires_at_ms: int
    overdraft_limit: int
    created_ms: int

    def ended_by(self, t_ms: int) -> bool:
        """The grant existed before t_ms and its validity was over at t_ms: rows on it stamped at
        t_ms are its end-of-life entries."""
        return self.expires_at_ms != 0 and self.expires_at_ms <= t_ms and self.created_ms < t_ms


@dataclass(frozen=True)
class Flow:
    """Ledger rows of one grant, kind and boundary position, summed (see WINDOW_FLOWS)."""

    grant_id: str
    bucket: str
    kind: str
    at_start: bool
    at_end: bool
    carry_out: bool  # a carry_over row on the grant the remainder left
    d_granted: int
    d_used: int
    d_held: int
    amount: int = 0


@dataclass(frozen=True)
class Overage:
    """One charge that drew money from a wallet for units beyond the meter's grants (H6)."""

    meter: str
    wallet: str
    units: int  # the charge's units
    from_grants: int  # of which the meter's own grants gave
    minor: int  # money drawn from the wallet


@dataclass
class _State:
    granted: int = 0
    used: int = 0
    held: int = 0

    @property
    def remaining(self) -> int:
        return self.granted - self.used - self.held


@dataclass
class _Lines:
    by_bucket: dict[str, StatementLine] = field(default_factory=dict)

    def of(self, bucket: str) -> StatementLine:
        line = self.by_bucket.get(bucket)
        if line is None:
            line = self.by_bucket[bucket] = StatementLine(bucket)
        return line


def transaction_amount(kind: str, d_granted: int, d_used: int, amount: int) -> int:
    """The signed change a transaction row makes to its bucket's balance.

    A forfeit row records what its grant lost when it ended; the loss itself is the grant's end (the
    row moves nothing), so its change is minus its amount."""
    change = d_granted - d_used
    if kind == "forfeit" and change == 0:
        return -amount
    return change


def in_cycle(grant: GrantInfo | None, at_start: bool, at_end: bool, start_ms: int, end_ms: int) -> bool:
    """Whether rows stamped in [start_ms, end_ms] on `grant`, at the given boundary position, belong
    to the cycle [start_ms, end_ms)."""
    if at_start:
        return grant is None or not grant.ended_by(start_ms)
    if at_end:
        return grant is not None and grant.ended_by(end_ms)
    return True


def in_scope(grant: GrantInfo, start_ms: int, end_ms: int) -> bool:
    """The grant existed at some time in the cycle: made before its end, not over before its start."""
    return grant.created_ms < end_ms and not grant.ended_by(start_ms)


def statement_lines(grants: Mapping[str, GrantInfo], before_start: Mapping[str, tuple[int, int, int]],
                    flows: Iterable[Flow], overage: Iterable[Overage], start_ms: int, end_ms: int,
                    now_ms: int) -> list[StatementLine]:
    """One line per bucket for the cycle [start_ms, end_ms), in bucket order.

    before_start: each grant's (granted, used, held) over the rows stamped before start_ms. flows:
    the rows stamped in [start_ms, end_ms] (boundary rows are sorted out here). For a cycle still
    open, what has happened until now_ms.

    - opening: remaining at the start on grants that were already there (after the previous cycle's
      end entries, before this cycle's new grants and carry-ins);
    - granted: every non-usage change during the cycle: cycle grants, packs, top-ups, carry-ins,
      settlements, adjustments;
    - used: the units (or minor units) charged by usage rows during the cycle;
    - forfeited: what was left on grants whose validity ended during the cycle (the forfeit rows at
      the cycle end, a top-up that expired unused), plus forfeit rows that move units;
    - closing: what is left at the end: grants that outlive the cycle, plus what was carried over
      (it reappears as granted in the next cycle).

    opening + granted - used - forfeited = closing, up to the units still held at the start or the end.
    """
    lines = _Lines()
    states = _openings(lines, grants, before_start, start_ms, end_ms)
    for f in flows:
        if f.bucket and in_cycle(grants.get(f.grant_id), f.at_start, f.at_end, start_ms, end_ms):
            _add_flow(lines.of(f.bucket), states.get(f.grant_id), f)
    end_ref = min(end_ms, now_ms)
    for gid, st in states.items():
        g = grants[gid]
        if g.expires_at_ms and g.expires_at_ms <= end_ref:
            lines.of(g.bucket).forfeited += st.remaining
        else:
            lines.of(g.bucket).closing += st.remaining
    for o in overage:
        line = lines.of(o.meter)
        line.overage_units += o.units - o.from_grants
        line.overage_minor += o.minor
        line.overage_currency = o.wallet.removeprefix("$")
    return [lines.by_bucket[b] for b in sorted(lines.by_bucket)]


def _openings(lines: _Lines, grants: Mapping[str, GrantInfo], before_start: Mapping[str, tuple[int, int, int]],
              start_ms: int, end_ms: int) -> dict[str, _State]:
    """The state at the start of every grant of the cycle, its remaining counted as opening when the
    grant was there before the cycle; every bucket of those grants gets its line, even untouched."""
    states: dict[str, _State] = {}
    for gid, g in grants.items():
        if not in_scope(g, start_ms, end_ms):
            continue
        st = _State()
        if g.created_ms < start_ms:
            st = _State(*before_start.get(gid, (0, 0, 0)))
            lines.of(g.bucket).opening += st.remaining
        else:
            lines.of(g.bucket)
        states[gid] = st
    return states


def _add_flow(line: StatementLine, state: _State | None, f: Flow) -> None:
    """One flow of the cycle into its bucket's line, and into its grant's state (None: a grant out of scope)."""
    change = f.d_granted - f.d_used
    if f.kind in USAGE_KINDS:
        line.used += f.d_used
    elif f.kind == "forfeit":
        line.forfeited -= change
    elif f.carry_out:
        line.closing -= change  # the remainder moved into the next cycle's grant
    else:
        line.granted += change
    if state is not None:
        state.granted += f.d_granted
        state.used += f.d_used
        state.held += f.d_held
