"""reports/accounts_calc.statement_lines: a cycle's statement from plain rows (R5, KB4), no database."""

from __future__ import annotations

from quota_service.reports.accounts_calc import Flow, GrantInfo, Overage, statement_lines
from quota_service.reports.model import StatementLine

START, END = 1_000, 2_000


def grant(gid: str, bucket: str, created_ms: int, expires_at_ms: int = 0) -> GrantInfo:
    return GrantInfo(gid, bucket, "plan", "", 10, created_ms, expires_at_ms, 0, created_ms)


def test_r5_kb4_each_bucket_balances_opening_granted_used_forfeited_closing() -> None:
    grants = {g.grant_id: g for g in (
        grant("old", "m", 0),  # there before the cycle, outlives it
        grant("cycle", "m", START + 10, END),  # made in the cycle, ends with it
        grant("later", "other", END + 1),  # made after the cycle: not in its statement
        grant("wallet", "$IDR", 0),
    )}
    before = {"old": (100, 30, 0), "wallet": (1_000, 0, 0)}
    flows = [
        Flow("cycle", "m", "cycle_grant", False, False, False, 50, 0, 0),
        Flow("cycle", "m", "consume", False, False, False, 0, 20, 0),
        Flow("old", "m", "consume", False, False, False, 0, 10, 0),
        Flow("old", "m", "carry_over", False, True, True, -5, 0, 0),  # the old grant did not end: not this cycle's
        Flow("old", "m", "consume", False, True, False, 0, 99, 0),  # stamped at the end on a live grant: the next cycle's
        Flow("wallet", "$IDR", "commit", False, False, False, 0, 300, 0),
    ]
    overage = [Overage("m", "$IDR", units=4, from_grants=1, minor=300)]
    lines = statement_lines(grants, before, flows, overage, START, END, now_ms=END + 10)
    assert lines == [
        StatementLine("$IDR", opening=1_000, used=300, closing=700),
        StatementLine("m", opening=70, granted=50, used=30, forfeited=30, closing=60, overage_units=3,
                      overage_minor=300, overage_currency="IDR"),
    ]
    for x in lines:
        assert x.opening + x.granted - x.used - x.forfeited == x.closing


def test_r5_a_carry_over_at_the_end_of_an_ending_grant_is_closing_not_forfeit() -> None:
    grants = {"g": grant("g", "m", 0, END)}
    flows = [Flow("g", "m", "carry_over", False, True, True, -40, 0, 0)]
    [line] = statement_lines(grants, {"g": (100, 60, 0)}, flows, [], START, END, now_ms=END)
    assert line == StatementLine("m", opening=40, closing=40)


def test_r5_an_open_cycle_counts_until_now() -> None:
    grants = {"g": grant("g", "m", 0, END)}  # ends with the cycle, which has not ended yet
    [line] = statement_lines(grants, {"g": (10, 0, 0)}, [], [], START, END, now_ms=START + 5)
    assert (line.closing, line.forfeited) == (10, 0)
