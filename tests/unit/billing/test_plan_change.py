"""The plan change, subscribe and extension planners on plain data (QC1, FB3, FB6, KB5, TA2, QC2, A1):
the operations each gives, with no database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from quota_service.catalogue import Catalogue, OneTimeGrant, Trial
from quota_service.domain import cycles
from quota_service.domain.billing import ops
from quota_service.domain.billing.cycle_end import NextPlan
from quota_service.domain.billing.plan_change import (
    forfeitable_items,
    plan_change_at_cycle_end,
    plan_change_now,
    plan_extension,
    plan_packs_added,
)
from quota_service.domain.billing.policies import DAY_MS
from quota_service.domain.billing.subscribe import SubscribeFacts, first_cycle, plan_subscribe
from quota_service.domain.validation import MAX_TIME_MS
from quota_service.errors import FailedPrecondition

from tests.unit.billing.test_cycle_end import (
    ACCT,
    ANCHOR,
    B1,
    BASIC,
    PRO,
    TZ,
    catalogue,
    entries,
    facts,
    grant,
    ms,
    new_grant,
    of,
    pack,
    plan,
    row,
    sub,
)

NOW = ms(2026, 2, 1)  # in cycle 0 (Jan 15 .. Feb 15)
CHANGE = {"plan": "pro", "interval": "monthly", "packs": {}}


def once(gid: str, *, per: str = "account", forfeit_by: tuple[str, ...] = (), days: int | None = None) -> OneTimeGrant:
    return OneTimeGrant(gid, "msgs", None, 300, "promo", 1, per, forfeit_by, days, label=f"Once {gid}")


# ---------------------------------------------------------------------------------------------
# a change now, a change at the cycle end (QC1, FB6)
# ---------------------------------------------------------------------------------------------


def test_qc1_a_change_now_cuts_the_cycle_and_starts_the_new_plan_there() -> None:
    cat = catalogue(BASIC, PRO)
    f = facts(sub(), cat, [row("plan:msgs", 100, used=30)], at=NOW, nxt=NextPlan("pro", PRO, "monthly", {}), early=True)
    out = plan_change_now(f, CHANGE, "key-1")
    first = out[0]
    assert isinstance(first, ops.Entry) and (first.kind, first.key, first.at_ms) == ("plan_change", "key-1", NOW)
    assert first.attrs["from"] == {"plan": "basic", "interval": "monthly", "packs": {}}
    assert first.attrs["to"] == CHANGE and first.attrs["effective_at_ms"] == NOW
    assert out[1:3] == [ops.ExpireCycleGrants(0, NOW), ops.CutCycle(0, NOW)]  # what the cut cycle granted ends now
    assert [e.amount for e in entries(out, "forfeit")] == [70]
    g = new_grant(out, f"{ACCT}/plan:msgs/1")
    assert (g.granted, g.starts_ms, g.expires_ms) == (1000, NOW, ms(2026, 3, 1))
    [nc] = of(out, ops.NextCycle)
    assert (nc.cycle_no, nc.anchor_at_ms, nc.anchor_cycle_no, nc.plan) == (1, NOW, 1, "pro")  # a new rhythm from now


def test_qc1_a_change_at_the_cycle_end_waits_as_pending() -> None:
    out = plan_change_at_cycle_end(sub(), CHANGE, NOW, "key-2")
    assert out[0] == ops.SetPending({**CHANGE, "requested_at_ms": NOW})
    e = out[1]
    assert isinstance(e, ops.Entry) and e.kind == "plan_change"
    assert (e.attrs["effective_at_ms"], e.attrs["canceled"], e.key) == (B1, False, "key-2")
    assert len(out) == 2  # nothing else changes before the cycle end


def test_fb6_asking_at_the_cycle_end_for_what_the_subscription_has_cancels_the_change() -> None:
    same = {"plan": "basic", "interval": "monthly", "packs": {"boost": 2}}
    out = plan_change_at_cycle_end(sub(packs={"boost": 2}), same, NOW, "key-3")
    assert out[0] == ops.SetPending(None)
    assert isinstance(out[1], ops.Entry) and out[1].attrs["canceled"] is True


# ---------------------------------------------------------------------------------------------
# packs added now (FB6), one-time grants a purchase forfeits (FB3)
# ---------------------------------------------------------------------------------------------


def test_fb6_more_packs_are_granted_to_the_current_cycle_at_once() -> None:
    cat = catalogue(BASIC, packs=[pack("boost", overdraft=5)])
    out = plan_packs_added(sub(packs={"boost": 1}), cat, {"boost": 3}, NOW, "key-4", {"pack:boost": 2}, [])
    g = new_grant(out, f"{ACCT}/pack:boost/0/+2")  # the next number among the cycle's grants of the pack
    assert (g.granted, g.overdraft, g.starts_ms, g.expires_ms, g.cycle_no) == (100, 10, NOW, B1, 0)
    [e] = entries(out, "cycle_grant")
    assert (e.d_granted, e.key, e.attrs["quantity"], e.attrs["reason"]) == (100, "key-4", 2, "packs added")
    assert out[-1] == ops.SetPacks({"boost": 3})


def test_fb6_fewer_packs_now_are_refused() -> None:
    cat = catalogue(BASIC, packs=[pack("boost")])
    with pytest.raises(FailedPrecondition, match="fewer boost"):
        plan_packs_added(sub(packs={"boost": 2}), cat, {"boost": 1}, NOW, "k", {}, [])


def test_fb6_the_same_packs_again_are_refused() -> None:
    cat = catalogue(BASIC, packs=[pack("boost")])
    with pytest.raises(FailedPrecondition, match="already has"):
        plan_packs_added(sub(packs={"boost": 2}), cat, {"boost": 2}, NOW, "k", {}, [])


def test_fb3_a_pack_purchase_forfeits_what_is_left_of_a_one_time_grant() -> None:
    p = plan("basic", [grant("msgs")], one_time=[once("free", forfeit_by=("sessions",)), once("other")])
    cat = catalogue(p, packs=[pack("sessions")])
    assert forfeitable_items(p) == ["once:free"]
    live = [row("once:free", 300, used=120, gid="free-grant")]
    out = plan_packs_added(sub(), cat, {"sessions": 1}, NOW, "k", {}, live)
    i = out.index(ops.EndGrant("free-grant", NOW))
    e = out[i + 1]
    assert isinstance(e, ops.Entry) and (e.kind, e.amount, e.attrs["packs"]) == ("forfeit", 180, ["sessions"])


def test_fb3_a_pack_that_forfeits_nothing_leaves_one_time_grants_alone() -> None:
    p = plan("basic", [grant("msgs")], one_time=[once("free", forfeit_by=("sessions",))])
    cat = catalogue(p, packs=[pack("sessions"), pack("boost")])
    out = plan_packs_added(sub(), cat, {"boost": 1}, NOW, "k", {}, [row("once:free", 300, gid="free-grant")])
    assert of(out, ops.EndGrant) == [] and entries(out, "forfeit") == []


# ---------------------------------------------------------------------------------------------
# extension (KB5)
# ---------------------------------------------------------------------------------------------


def test_kb5_an_extension_moves_the_cycle_end_and_what_expires_with_it() -> None:
    out = plan_extension(sub(), 10, NOW, "key-5")
    new_end = B1 + 10 * DAY_MS
    assert out[:2] == [ops.MoveCycleEnd(0, B1, new_end), ops.CutCycle(0, new_end)]
    e = out[2]
    assert isinstance(e, ops.Entry) and e.attrs == {"cycle": 0, "from_end_ms": B1, "to_end_ms": new_end, "days": 10}


def test_kb5_an_open_ended_trial_has_no_end_to_move() -> None:
    with pytest.raises(FailedPrecondition, match="no end to move"):
        plan_extension(sub(interval="trial", end=MAX_TIME_MS), 1, NOW, "k")


# ---------------------------------------------------------------------------------------------
# subscribe (A1, QC1, TA2, QC2, FB3)
# ---------------------------------------------------------------------------------------------


def subscribing(p_name: str = "basic", *, interval: str = "monthly", packs: dict[str, int] | None = None,
                cat: Catalogue | None = None, capacity: Mapping[str, Mapping[str, Any] | None] | None = None) -> list[ops.Op]:
    cat = cat or catalogue(BASIC, PRO)
    f = SubscribeFacts(ACCT, cat, p_name, cat.plans[p_name], interval, ANCHOR, NOW, TZ, {"other": {"kept": 1}}, "key-s",
                       dict(packs or {}), dict(capacity or {}))
    return plan_subscribe(f)


def test_a1_subscribe_starts_cycle_0_with_the_plan_grants_and_policies() -> None:
    out = subscribing("pro")
    c0 = cycles.cycle("monthly", ANCHOR, TZ, 0)
    assert out[:2] == [ops.NewSubscription("chat", "pro", "monthly", 7, "sha256:cafe", {}, ANCHOR, c0.start_ms, c0.end_ms, NOW),
                       ops.RecordCycle(0, "chat", "pro", "monthly", {}, c0.start_ms, c0.end_ms, 7)]
    [pol] = of(out, ops.SetPolicies)
    assert set(pol.policies) == {"other", "msgs", "ai", "seats"}
    g = new_grant(out, f"{ACCT}/plan:msgs/0")
    assert (g.granted, g.starts_ms, g.expires_ms, g.cycle_no) == (1000, c0.start_ms, c0.end_ms, 0)
    lines = entries(out, "cycle_grant")
    assert [(e.grant_id, e.at_ms, e.key) for e in lines] == [(f"{ACCT}/plan:msgs/0", NOW, "key-s"),
                                                             (f"{ACCT}/plan:ai/0", NOW, "key-s")]
    assert new_grant(out, f"{ACCT}/capacity:seats").granted == 5  # QC2


def test_qc2_subscribing_keeps_a_capacity_grant_the_account_already_has() -> None:
    out = subscribing("pro", capacity={"seats": {"granted": 5, "used": 1, "held": 0}})
    assert all(g.item != "capacity:seats" for g in of(out, ops.NewGrant))


def test_fb6_packs_bought_with_the_plan_are_granted_to_the_first_cycle() -> None:
    cat = catalogue(BASIC, packs=[pack("boost", overdraft=2)])
    out = subscribing(packs={"boost": 2}, cat=cat)
    g = new_grant(out, f"{ACCT}/pack:boost/0")
    assert (g.granted, g.overdraft) == (100, 4)
    assert [e.attrs.get("quantity") for e in entries(out, "cycle_grant") if e.grant_id == g.grant_id] == [2]
    assert of(out, ops.NewSubscription)[0].packs == {"boost": 2}


def test_ta2_a_trial_grants_its_whole_allowance_for_its_duration() -> None:
    trial = plan("trial", kind="trial", intervals=(), meters=["msgs"], trial=Trial("msgs", 500, "trial over", 14))
    out = subscribing("trial", interval="trial", cat=catalogue(trial))
    g = new_grant(out, f"{ACCT}/chat/trial@{ANCHOR}")
    assert (g.granted, g.expires_ms, g.item, g.source) == (500, ANCHOR + 14 * DAY_MS, "trial", "trial")
    assert first_cycle(trial, "trial", ANCHOR, TZ).end_ms == ANCHOR + 14 * DAY_MS


def test_ta2_a_trial_without_a_duration_runs_until_the_account_subscribes() -> None:
    trial = plan("trial", kind="trial", intervals=(), trial=Trial("msgs", 500, "trial over"))
    out = subscribing("trial", interval="trial", cat=catalogue(trial))
    assert new_grant(out, f"{ACCT}/chat/trial@{ANCHOR}").expires_ms == 0
    assert of(out, ops.NewSubscription)[0].cycle_end_ms == MAX_TIME_MS


def test_one_time_grants_are_once_per_account_or_once_per_subscription() -> None:
    p = plan("basic", one_time=[once("welcome", per="account", days=30), once("bonus", per="subscription")])
    out = subscribing(cat=catalogue(p))
    per_account = new_grant(out, f"{ACCT}/chat/once:welcome")  # the same id on every plan: granted once
    assert (per_account.granted, per_account.expires_ms, per_account.cycle_no) == (300, ANCHOR + 30 * DAY_MS, None)
    assert [e.attrs["once_per"] for e in per_account.entries] == ["account"]
    per_sub = new_grant(out, f"{ACCT}/chat/once:bonus/basic@{ANCHOR}")
    assert per_sub.expires_ms == 0 and len(per_sub.entries) == 1


def test_fb3_a_one_time_grant_bought_with_a_pack_that_forfeits_it_is_used_up_empty() -> None:
    p = plan("basic", one_time=[once("free", forfeit_by=("sessions",))])
    out = subscribing(packs={"sessions": 1}, cat=catalogue(p, packs=[pack("sessions")]))
    g = new_grant(out, f"{ACCT}/chat/once:free")
    assert (g.granted, g.starts_ms, g.expires_ms, g.entries) == (0, ANCHOR, ANCHOR, ())
