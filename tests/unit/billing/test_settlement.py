"""Debts and settlements on plain grant rows (QC7, QA3c): what a top-up pays, what the settlement
rule pays from the initial balance, when a withheld reset is released. No database: the planners'
operations are played on the rows here to read the balances they leave."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from quota_service.catalogue import Grant, Plan, Settlement, load_catalogue
from quota_service.domain.billing import ops
from quota_service.domain.billing.settlement import (
    Subscription,
    collect_debts,
    release_withheld,
    settle_negative,
    settles_from,
)

IDR = 100  # minor units per rupiah
NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC
CATALOGUES = Path(__file__).resolve().parents[3] / "deploy" / "catalogues"
RULE = Settlement(negative="additional_balance", from_="initial_balance")
KINDS = ("additional_balance",)


def row(grant_id: str, granted: int, used: int, held: int = 0, item: str | None = None) -> dict[str, Any]:
    return {"grant_id": grant_id, "granted": granted, "used": used, "held": held, "item": item}


def played(rows: list[dict[str, Any]], operations: Iterable[ops.Op]) -> dict[str, int]:
    """Each grant's remaining after the operations' moves of used units (moves on grants not among
    `rows`, a payer followed apart, are left out)."""
    after = {r["grant_id"]: dict(r) for r in rows}
    for op in operations:
        if isinstance(op, ops.MoveUsed) and op.grant_id in after:
            after[op.grant_id]["used"] += op.delta
    return {g: r["granted"] - r["used"] - r["held"] for g, r in after.items()}


def settle_entries(operations: Iterable[ops.Op]) -> list[ops.Entry]:
    return [op for op in operations if isinstance(op, ops.Entry)]


def seed_wallet(initial_left_idr: int) -> list[dict[str, Any]]:
    """The seed's wallet: the initial balance with `initial_left_idr` left, the additional balance
    adjusted to IDR -500,000 (granted 100,000, used 600,000)."""
    initial = row("initial", 500_000 * IDR, (500_000 - initial_left_idr) * IDR, item="once:initial_balance")
    additional = row("additional", 100_000 * IDR, 600_000 * IDR, item="top_up:additional_balance")
    return [initial, additional]


# --- QC7: the settlement rule pays a negative additional balance from the initial balance -----------


def test_qc7_partial_settlement_leaves_the_rest_of_the_debt() -> None:
    rows = seed_wallet(350_000)
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    assert paid.paid == 350_000 * IDR
    assert played(rows, paid.ops) == {"initial": 0, "additional": -150_000 * IDR}


def test_qc7_full_settlement_leaves_both_at_zero() -> None:
    rows = seed_wallet(500_000)
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    assert paid.paid == 500_000 * IDR
    assert played(rows, paid.ops) == {"initial": 0, "additional": 0}


def test_qc7_settlements_are_settle_entries_never_usage_and_the_floor_follows() -> None:
    rows = seed_wallet(350_000)
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    entries = settle_entries(paid.ops)
    assert [(e.kind, e.grant_id, e.d_used, e.amount) for e in entries] == [
        ("settle", "additional", -350_000 * IDR, 350_000 * IDR), ("settle", "initial", 350_000 * IDR, 350_000 * IDR)]
    assert all(e.attrs["rule"] == "settlement" and e.attrs["from_grant"] == "initial" for e in entries)
    assert sum(e.d_used for e in entries) == 0, "a settlement moves a debt; the wallet's net is unchanged"
    assert ops.FloorFollowsDebt("additional") in paid.ops
    assert ops.FloorFollowsDebt("initial") not in paid.ops


def test_qc7_settlement_pays_only_the_rules_negative_grant() -> None:
    rows = [*seed_wallet(350_000), row("plan-debt", 0, 10 * IDR, item="plan:other")]
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    assert played(rows, paid.ops)["plan-debt"] == -10 * IDR
    assert not any(getattr(op, "grant_id", None) == "plan-debt" for op in paid.ops)


def test_qc7_an_ad_hoc_top_up_counts_as_the_rules_kind_when_the_rule_names_a_top_up_kind() -> None:
    assert settles_from(RULE, None, KINDS)
    assert not settles_from(RULE, None, ("another_kind",))
    assert settles_from(RULE, "plan:additional_balance", ())
    assert not settles_from(RULE, "top_up:another_kind", KINDS)
    rows = [row("initial", 100, 0, item="once:initial_balance"), row("ad-hoc", 10, 50)]
    assert played(rows, settle_negative(rows, RULE, KINDS, "$IDR", NOW).ops) == {"initial": 60, "ad-hoc": 0}


def test_qc7_a_settlement_pays_no_more_than_the_debt_has_used() -> None:
    """What is held stays held: a debt is paid down to nothing used, not further."""
    rows = [row("initial", 1_000, 0, item="once:initial_balance"),
            row("additional", 0, 100, held=50, item="top_up:additional_balance")]
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    assert paid.paid == 100
    assert played(rows, paid.ops) == {"initial": 900, "additional": -50}


def test_qc7_several_initial_grants_pay_in_turn_and_the_rows_are_left_as_read() -> None:
    rows = [row("initial-1", 100, 70, item="once:initial_balance"),
            row("initial-2", 100, 0, item="once:initial_balance"),
            row("additional", 0, 80, item="top_up:additional_balance")]
    before = copy.deepcopy(rows)
    paid = settle_negative(rows, RULE, KINDS, "$IDR", NOW)
    assert played(rows, paid.ops) == {"initial-1": 0, "initial-2": 50, "additional": 0}
    assert rows == before, "the planner keeps its running state itself"


# --- a top-up first pays what its bucket owes (QC7, QA3c) -----------------------------------------


def test_qc7_a_top_up_smaller_than_the_debt_goes_whole_to_it() -> None:
    rows = [row("debt", 100_000 * IDR, 250_000 * IDR), row("top", 100_000 * IDR, 0)]
    paid = collect_debts(rows, "$IDR", "top", NOW)
    assert paid.paid == 100_000 * IDR
    assert played(rows, paid.ops) == {"debt": -50_000 * IDR, "top": 0}


def test_qc7_a_larger_top_up_pays_the_debt_first_and_only_the_rest_is_spendable() -> None:
    rows = [row("debt", 0, 50_000 * IDR), row("top", 200_000 * IDR, 0)]
    paid = collect_debts(rows, "$IDR", "top", NOW)
    assert played(rows, paid.ops) == {"debt": 0, "top": 150_000 * IDR}
    entries = settle_entries(paid.ops)
    assert [(e.grant_id, e.d_used) for e in entries] == [("debt", -50_000 * IDR), ("top", 50_000 * IDR)]
    assert all(e.kind == "settle" and e.attrs["rule"] == "top_up_pays_debt" for e in entries)


def test_qc7_debts_are_paid_oldest_first() -> None:
    rows = [row("old", 0, 30), row("positive", 10, 0), row("new", 0, 30), row("top", 40, 0)]
    paid = collect_debts(rows, "m", "top", NOW)
    assert played(rows, paid.ops) == {"old": 0, "positive": 10, "new": -20, "top": 0}
    assert [op.grant_id for op in paid.ops if isinstance(op, ops.FloorFollowsDebt)] == ["old", "new"]


def test_qc7_the_floor_of_each_paid_debt_follows_it() -> None:
    rows = [row("debt", 0, 30), row("top", 100, 0)]
    paid = collect_debts(rows, "m", "top", NOW)
    assert paid.ops == (ops.MoveUsed("debt", -30), ops.MoveUsed("top", 30),
                        ops.Entry("settle", "debt", "m", NOW, d_used=-30, amount=30,
                                  attrs={"rule": "top_up_pays_debt", "item": None, "from_grant": "top",
                                         "to_grant": "debt"}),
                        ops.Entry("settle", "top", "m", NOW, d_used=30, amount=30,
                                  attrs={"rule": "top_up_pays_debt", "item": None, "from_grant": "top",
                                         "to_grant": "debt"}),
                        ops.FloorFollowsDebt("debt"))


@pytest.mark.parametrize("payer_rows", [[], [row("top", 0, 0)]], ids=["starts_later", "nothing_left"])
def test_qc7_a_top_up_that_starts_later_or_has_nothing_left_pays_nothing(payer_rows: list[dict[str, Any]]) -> None:
    rows = [row("debt", 0, 30), *payer_rows]
    paid = collect_debts(rows, "m", "top", NOW)
    assert paid.ops == () and paid.paid == 0


def test_qc7_a_debt_is_paid_no_further_than_nothing_used() -> None:
    rows = [row("debt", 0, 20, held=15), row("top", 100, 0)]
    assert played(rows, collect_debts(rows, "m", "top", NOW).ops) == {"debt": -15, "top": 80}


# --- QA3c: a withheld reset is released once every debt it waits for is paid -----------------------


@pytest.fixture(scope="module")
def starter() -> Plan:
    """The AI chatbot's starter plan: initial dialogs withheld while the prepaid extra is negative."""
    return load_catalogue(CATALOGUES / "ai_chatbot.yaml").plans["starter"]


def sub(withheld: tuple[str, ...] = ("initial_dialogs",)) -> Subscription:
    return Subscription("acct", "ai_chatbot", "starter", "calendar_month", 3, NOW + 86_400_000, withheld)


def test_qa3c_a_top_up_that_pays_the_whole_debt_releases_the_reset(starter: Plan) -> None:
    rows = [row("acct/pack/3", 0, 40, item="pack:extra_prepaid")]
    release = release_withheld(sub(), starter, rows, "top", 100, "ai_dialog", NOW)
    assert release.released == ("initial_dialogs",) and release.withheld == () and release.paid == 40
    assert played([*rows, row("top", 100, 0)], release.ops) == {"acct/pack/3": 0, "top": 60}
    new = [op for op in release.ops if isinstance(op, ops.NewGrant)]
    assert len(new) == 1
    g = new[0]
    assert (g.grant_id, g.bucket, g.granted, g.starts_ms, g.expires_ms, g.item, g.cycle_no) == (
        "acct/plan:initial_dialogs/3", "ai_dialog", 1000, NOW, NOW + 86_400_000, "plan:initial_dialogs", 3)
    assert [(e.kind, e.d_granted, e.attrs["paid_by"]) for e in g.entries] == [("reset_released", 1000, "top")]
    assert release.ops[-1] == ops.SetWithheld(())
    assert not any(isinstance(op, ops.FloorFollowsDebt) for op in release.ops)


def test_qa3c_a_partial_payment_keeps_the_reset_withheld(starter: Plan) -> None:
    rows = [row("debt", 0, 40, item="pack:extra_prepaid")]
    release = release_withheld(sub(), starter, rows, "top", 25, "ai_dialog", NOW)
    assert release.released == () and release.withheld == ("initial_dialogs",) and release.paid == 25
    assert played(rows, release.ops) == {"debt": -15}
    assert not any(isinstance(op, ops.NewGrant | ops.SetWithheld) for op in release.ops)


def test_qa3c_debts_of_an_item_are_summed_a_positive_grant_of_it_covers_a_negative_one(starter: Plan) -> None:
    rows = [row("debt", 0, 40, item="pack:extra_prepaid"), row("pack", 100, 0, item="pack:extra_prepaid")]
    release = release_withheld(sub(), starter, rows, "top", 10, "ai_dialog", NOW)
    assert release.released == ("initial_dialogs",)


def test_qa3c_released_only_when_every_named_debt_is_paid() -> None:
    grant = Grant("base", "m", None, {"monthly": 50}, "plan", 10, 0, "reset_withheld_while_negative",
                  withheld_by=("a", "b"))
    plan = Plan("p", "P", "subscription", ("monthly",), {}, (grant,), (), {}, {})
    s = Subscription("acct", "prod", "p", "monthly", 1, NOW + 1, ("base",))
    rows = [row("debt-a", 0, 10, item="pack:a"), row("debt-b", 0, 10, item="pack:b")]
    one = release_withheld(s, plan, rows, "top", 15, "m", NOW)
    assert one.released == () and played(rows, one.ops) == {"debt-a": 0, "debt-b": -5}
    both = release_withheld(s, plan, rows, "top", 20, "m", NOW)
    assert both.released == ("base",) and played(rows, both.ops) == {"debt-a": 0, "debt-b": 0}


def test_qa3c_a_top_up_of_another_bucket_or_nothing_withheld_changes_nothing(starter: Plan) -> None:
    rows = [row("debt", 0, 40, item="pack:extra_prepaid")]
    assert release_withheld(sub(), starter, rows, "top", 100, "$IDR", NOW).ops == ()
    assert release_withheld(sub(()), starter, rows, "top", 100, "ai_dialog", NOW).ops == ()
