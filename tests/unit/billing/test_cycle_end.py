"""The cycle end planner on plain data (QC1, FB5, FB6, QA3b, QA3c, TA1, QC2): every at-cycle-end rule
gives the ledger operations it should, with no database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from quota_service.catalogue import Catalogue, Grant, MeterPolicySpec, OneTimeGrant, Pack, Plan, Trial
from quota_service.domain import cycles
from quota_service.domain.billing import ops
from quota_service.domain.billing.capacity import plan_capacity
from quota_service.domain.billing.cycle_end import CycleEndFacts, NextPlan, Subscription, plan_cycle_end
from quota_service.domain.validation import MAX_TIME_MS

ACCT = "acct-1"
TZ = "UTC"
OpT = TypeVar("OpT")


def ms(year: int, month: int, day: int) -> int:
    return int(dt.datetime(year, month, day, tzinfo=dt.UTC).timestamp() * 1000)


ANCHOR = ms(2026, 1, 15)
B1 = ms(2026, 2, 15)  # the end of cycle 0 of a monthly subscription anchored at ANCHOR
B2 = ms(2026, 3, 15)


def grant(gid: str, *, meter: str | None = "msgs", wallet: str | None = None, amount: int = 100, rule: str = "reset",
          carry: int | None = None, withheld_by: tuple[str, ...] = (), overdraft: int = 0) -> Grant:
    return Grant(gid, meter if wallet is None else None, wallet, {"monthly": amount, "annual": amount * 12}, "plan", 5,
                 overdraft, rule, carry, withheld_by, label=f"Grant {gid}")


def pack(name: str, *, amount: int = 50, recurrence: str = "every_cycle", rule: str = "expire",
         carry: int | None = None, overdraft: int = 0) -> Pack:
    return Pack(name, name, "msgs", {"monthly": amount, "annual": amount * 12}, "IDR", {"monthly": 1000}, recurrence,
                rule, carry, overdraft, 20, "pack", True, (), label=f"Pack {name}")


def spec(meter: str) -> MeterPolicySpec:
    return MeterPolicySpec(meter, None, "NONE", {}, ())


def plan(name: str, grants: Sequence[Grant] = (), *, one_time: Sequence[OneTimeGrant] = (),
         capacity: Mapping[str, int] | None = None, meters: Sequence[str] = (), kind: str = "subscription",
         intervals: tuple[str, ...] = ("monthly", "annual"), trial: Trial | None = None) -> Plan:
    return Plan(name, name.title(), kind, intervals, {}, tuple(grants), tuple(one_time), dict(capacity or {}),
                {m: spec(m) for m in meters}, trial)


def catalogue(*plans: Plan, packs: Sequence[Pack] = ()) -> Catalogue:
    return Catalogue("chat", 7, "Chat", "chat.yaml", "sha256:cafe", {}, {}, {p.name: p for p in plans},
                     {p.name: p for p in packs}, {}, {}, {})


def row(item: str, granted: int, used: int = 0, held: int = 0, *, k: int = 0, gid: str | None = None,
        bucket: str = "msgs", carries: int = 0, debt_overdraft: int = 0, overdraft: int = 0) -> dict[str, Any]:
    return {"grant_id": gid or f"{ACCT}/{item}/{k}", "bucket": bucket, "source": "plan", "label": f"L {item}",
            "priority": 5, "granted": granted, "used": used, "held": held, "overdraft_limit": overdraft,
            "item": item, "carries": carries, "debt_overdraft": debt_overdraft}


def sub(plan_name: str = "basic", *, interval: str = "monthly", k: int = 0, end: int = B1, anchor: int = ANCHOR,
        anchor_no: int = 0, packs: Mapping[str, int] | None = None, withheld: tuple[str, ...] = ()) -> Subscription:
    return Subscription(ACCT, "chat", plan_name, interval, k, end, anchor, anchor_no, dict(packs or {}), withheld)


def facts(s: Subscription, cat: Catalogue, grants: Sequence[Mapping[str, Any]], *, at: int | None = None,
          nxt: NextPlan | None = None, early: bool = False, policies: Mapping[str, Any] | None = None,
          capacity: Mapping[str, Any] | None = None) -> CycleEndFacts:
    return CycleEndFacts(s, TZ, dict(policies or {}), list(grants), cat, cat.plans[s.plan], s.interval,
                         s.cycle_end_ms if at is None else at, nxt, dict(capacity or {}), early)


def of(out: Sequence[ops.Op], kind: type[OpT]) -> list[OpT]:
    return [op for op in out if isinstance(op, kind)]


def entries(out: Sequence[ops.Op], kind: str) -> list[ops.Entry]:
    """Ledger lines of one kind, written as operations or with a new grant."""
    found = [op for op in out if isinstance(op, ops.Entry)]
    found += [e for g in of(out, ops.NewGrant) for e in g.entries]
    return [e for e in found if e.kind == kind]


def new_grant(out: Sequence[ops.Op], gid: str) -> ops.NewGrant:
    [g] = [g for g in of(out, ops.NewGrant) if g.grant_id == gid]
    return g


BASIC = plan("basic", [grant("msgs")], meters=["msgs"])


# ---------------------------------------------------------------------------------------------
# reset, expire
# ---------------------------------------------------------------------------------------------


def test_qc1_reset_forfeits_what_is_left_and_grants_the_new_cycle_at_the_boundary() -> None:
    end = plan_cycle_end(facts(sub(), catalogue(BASIC), [row("plan:msgs", 100, used=30, held=5)]))
    assert end.cycle_no == 1
    [forfeit] = entries(end.ops, "forfeit")
    assert (forfeit.grant_id, forfeit.amount, forfeit.at_ms) == (f"{ACCT}/plan:msgs/0", 65, B1)
    assert forfeit.attrs["cycle"] == 0 and forfeit.attrs["item"] == "plan:msgs"
    g = new_grant(end.ops, f"{ACCT}/plan:msgs/1")
    assert (g.granted, g.starts_ms, g.expires_ms, g.cycle_no, g.bucket, g.label) == (100, B1, B2, 1, "msgs", "Grant msgs")
    [line] = g.entries  # written only when the grant id was free: a second pass grants nothing twice
    assert (line.kind, line.d_granted, line.at_ms, line.attrs["cycle"], line.attrs["catalogue_version"]) == \
        ("cycle_grant", 100, B1, 1, 7)


def test_qc1_a_grant_used_up_exactly_forfeits_nothing() -> None:
    end = plan_cycle_end(facts(sub(), catalogue(BASIC), [row("plan:msgs", 100, used=100)]))
    assert entries(end.ops, "forfeit") == []
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/1").granted == 100


def test_qc1_expire_forfeits_what_is_left_and_grants_nothing_new() -> None:
    p = plan("basic", [grant("msgs", rule="expire")])
    end = plan_cycle_end(facts(sub(), catalogue(p), [row("plan:msgs", 100, used=40)]))
    assert [e.amount for e in entries(end.ops, "forfeit")] == [60]
    assert of(end.ops, ops.NewGrant) == []


def test_qc1_the_new_cycle_is_recorded_the_epoch_bumped_last() -> None:
    end = plan_cycle_end(facts(sub(), catalogue(BASIC), []))
    assert end.ops[-3:] == [
        ops.NextCycle(1, B1, B2, (), 7, "sha256:cafe", "basic", "monthly", {}, ANCHOR, 0),
        ops.RecordCycle(1, "chat", "basic", "monthly", {}, B1, B2, 7),
        ops.BumpEpoch(),
    ]
    assert of(end.ops, ops.SetPolicies) == []  # the same plan: the hot path's policies stay


def test_qc1_cycles_count_from_the_anchor_not_from_the_previous_boundary() -> None:
    anchor = ms(2026, 1, 31)
    s = sub(k=1, anchor=anchor, end=cycles.cycle("monthly", anchor, TZ, 1).end_ms)  # Feb 28 .. Mar 31
    end = plan_cycle_end(facts(s, catalogue(BASIC), []))
    [nxt] = of(end.ops, ops.NextCycle)
    assert (nxt.start_ms, nxt.end_ms) == (ms(2026, 3, 31), ms(2026, 4, 30))
    assert (nxt.anchor_at_ms, nxt.anchor_cycle_no) == (anchor, 0)


def test_ta1_a_boundary_past_the_anchors_next_end_continues_from_the_boundary() -> None:
    """The time zone changed since the cycle started, so the cycle the anchor gives ends before the
    boundary: the new cycle is the one of the anchor's rhythm that holds the boundary."""
    at = B2 + 86_400_000
    [nxt] = of(plan_cycle_end(facts(sub(), catalogue(BASIC), [], at=at)).ops, ops.NextCycle)
    assert (nxt.start_ms, nxt.end_ms, nxt.anchor_at_ms) == (at, ms(2026, 4, 15), ANCHOR)


# ---------------------------------------------------------------------------------------------
# carry_over (FB5, QA3b)
# ---------------------------------------------------------------------------------------------


def test_fb5_carry_over_moves_the_units_left_to_a_grant_of_the_new_cycle() -> None:
    p = plan("basic", [grant("msgs", rule="carry_over")])
    end = plan_cycle_end(facts(sub(), catalogue(p), [row("plan:msgs", 100, used=60, overdraft=10)]))
    old, new = f"{ACCT}/plan:msgs/0", f"{ACCT}/plan:msgs/1/carry0"
    g = new_grant(end.ops, new)
    assert (g.granted, g.used, g.carries, g.overdraft, g.expires_ms, g.entries) == (40, 0, 1, 10, B2, ())
    assert ops.MoveGranted(old, -40) in end.ops
    moved = entries(end.ops, "carry_over")
    assert [(e.grant_id, e.d_granted, e.amount) for e in moved] == [(old, -40, 40), (new, 40, 40)]
    assert moved[0].attrs["from_grant"] == old and moved[0].attrs["to_grant"] == new
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/1").granted == 100  # and the cycle's own grant as a reset
    assert entries(end.ops, "forfeit") == []


def test_fb5_carry_over_without_a_limit_carries_again_and_again() -> None:
    p = plan("basic", [grant("msgs", rule="carry_over")])
    end = plan_cycle_end(facts(sub(k=5), catalogue(p), [row("plan:msgs", 30, k=5, carries=5)]))
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/6/carry0").carries == 6


def test_fb5_carry_over_with_a_limit_forfeits_what_was_carried_that_often() -> None:
    p = plan("basic", [grant("msgs", rule="carry_over", carry=1)])
    grants = [row("plan:msgs", 30, gid="fresh"), row("plan:msgs", 20, gid="carried", carries=1)]
    end = plan_cycle_end(facts(sub(), catalogue(p), grants))
    assert [g.grant_id for g in of(end.ops, ops.NewGrant)] == [f"{ACCT}/plan:msgs/1/carry0", f"{ACCT}/plan:msgs/1"]
    assert [(e.grant_id, e.amount) for e in entries(end.ops, "forfeit")] == [("carried", 20)]


def test_qa3b_a_debt_carries_over_as_used_units_with_the_floor_opened_for_it() -> None:
    p = plan("basic", [grant("wallet", wallet="IDR", amount=0, rule="carry_over")])
    debt = row("plan:wallet", 0, used=25, bucket="$IDR", debt_overdraft=25, overdraft=25)
    end = plan_cycle_end(facts(sub(), catalogue(p), [debt]))
    old, new = f"{ACCT}/plan:wallet/0", f"{ACCT}/plan:wallet/1/carry0"
    g = new_grant(end.ops, new)
    assert (g.granted, g.used, g.bucket, g.overdraft) == (0, 25, "$IDR", 25)
    i = end.ops.index(ops.MoveUsed(old, -25))
    assert end.ops[i + 1] == ops.SetDebtOverdraft(new, 25)
    assert [(e.grant_id, e.d_used, e.amount) for e in entries(end.ops, "carry_over")] == [(old, -25, -25), (new, 25, -25)]


def test_qa3b_a_debt_without_an_opened_floor_sets_none() -> None:
    p = plan("basic", [grant("wallet", wallet="IDR", amount=0, rule="carry_over", overdraft=50)])
    end = plan_cycle_end(facts(sub(), catalogue(p), [row("plan:wallet", 0, used=10, bucket="$IDR")]))
    assert of(end.ops, ops.SetDebtOverdraft) == []
    assert ops.MoveUsed(f"{ACCT}/plan:wallet/0", -10) in end.ops


# ---------------------------------------------------------------------------------------------
# reset_withheld_while_negative (QA3c)
# ---------------------------------------------------------------------------------------------

WITHHELD = plan("basic", [grant("wallet", wallet="IDR", amount=0, rule="carry_over"),
                          grant("msgs", rule="reset_withheld_while_negative", withheld_by=("wallet",))])


def test_qa3c_the_reset_is_withheld_while_a_named_item_is_negative() -> None:
    grants = [row("plan:wallet", 0, used=30, bucket="$IDR"), row("plan:msgs", 100, used=70)]
    end = plan_cycle_end(facts(sub(), catalogue(WITHHELD), grants))
    [w] = entries(end.ops, "reset_withheld")
    assert (w.grant_id, w.bucket, w.amount, w.at_ms) == (None, "msgs", 100, B1)
    assert w.attrs["debts"] == {"wallet": -30} and w.attrs["grant_id"] == f"{ACCT}/plan:msgs/1"
    assert [e.grant_id for e in entries(end.ops, "forfeit")] == [f"{ACCT}/plan:msgs/0"]
    assert all(g.item != "plan:msgs" for g in of(end.ops, ops.NewGrant))
    assert of(end.ops, ops.NextCycle)[0].withheld == ("msgs",)


def test_qa3c_a_withheld_reset_stays_withheld_while_the_debt_remains() -> None:
    grants = [row("plan:wallet", 0, used=30, bucket="$IDR")]
    end = plan_cycle_end(facts(sub(withheld=("msgs",)), catalogue(WITHHELD), grants))
    assert of(end.ops, ops.NextCycle)[0].withheld == ("msgs",)


def test_qa3c_without_a_debt_it_is_a_reset_and_leaves_the_withheld_list() -> None:
    grants = [row("plan:wallet", 10, bucket="$IDR")]
    end = plan_cycle_end(facts(sub(withheld=("msgs",)), catalogue(WITHHELD), grants))
    assert entries(end.ops, "reset_withheld") == []
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/1").granted == 100
    assert of(end.ops, ops.NextCycle)[0].withheld == ()


# ---------------------------------------------------------------------------------------------
# packs (FB6), what no longer is sold, trials (TA2)
# ---------------------------------------------------------------------------------------------


def test_fb6_an_every_cycle_pack_renews_with_its_quantity_a_once_pack_does_not() -> None:
    cat = catalogue(BASIC, packs=[pack("boost"), pack("starter", recurrence="once")])
    grants = [row("pack:boost", 100, used=100), row("pack:starter", 50, used=20)]
    end = plan_cycle_end(facts(sub(packs={"boost": 2, "starter": 1}), cat, grants))
    g = new_grant(end.ops, f"{ACCT}/pack:boost/1")
    assert (g.granted, g.entries[0].attrs["quantity"], g.source, g.priority) == (100, 2, "pack", 20)
    assert all(g.item != "pack:starter" for g in of(end.ops, ops.NewGrant))
    assert [(e.grant_id, e.amount) for e in entries(end.ops, "forfeit")] == [(f"{ACCT}/pack:starter/0", 30)]


def test_fb6_a_pack_bought_on_its_own_follows_its_rule_at_the_cycle_end() -> None:
    cat = catalogue(BASIC, packs=[pack("boost", rule="carry_over")])
    end = plan_cycle_end(facts(sub(), cat, [row("pack:boost", 50, used=10, gid="bought")]))
    assert new_grant(end.ops, f"{ACCT}/pack:boost/1/carry0").granted == 40
    assert all(g.grant_id != f"{ACCT}/pack:boost/1" for g in of(end.ops, ops.NewGrant))  # not a subscription pack


def test_a_pack_no_longer_in_the_catalogue_is_reported_and_left_alone() -> None:
    end = plan_cycle_end(facts(sub(packs={"gone": 1}), catalogue(BASIC), [row("pack:gone", 50)]))
    assert end.missing_packs == ["gone"]
    assert entries(end.ops, "forfeit") == []
    assert of(end.ops, ops.NextCycle)[0].packs == {"gone": 1}


def test_ta2_a_trial_that_ran_out_of_time_forfeits_its_allowance_and_has_no_next_end() -> None:
    trial = plan("trial", kind="trial", intervals=(), trial=Trial("msgs", 500, "trial over", 14))
    s = sub("trial", interval="trial", end=ANCHOR + 14 * 86_400_000)
    end = plan_cycle_end(facts(s, catalogue(trial), [row("trial", 500, used=120, gid="t")]))
    assert [(e.grant_id, e.amount) for e in entries(end.ops, "forfeit")] == [("t", 380)]
    [nxt] = of(end.ops, ops.NextCycle)
    assert (nxt.end_ms, nxt.interval, nxt.anchor_at_ms) == (MAX_TIME_MS, "trial", ANCHOR)
    assert of(end.ops, ops.NewGrant) == []


# ---------------------------------------------------------------------------------------------
# a plan change at the cycle end (QC1, QC2)
# ---------------------------------------------------------------------------------------------

PRO = plan("pro", [grant("msgs", amount=1000), grant("ai", meter="ai", amount=10)], meters=["msgs", "ai"],
           capacity={"seats": 5})


def test_qc1_a_pending_change_bills_the_new_cycle_by_the_new_plan() -> None:
    cat = catalogue(BASIC, PRO)
    nxt = NextPlan("pro", PRO, "monthly", {})
    end = plan_cycle_end(facts(sub(), cat, [row("plan:msgs", 100, used=10)], nxt=nxt,
                               policies={"msgs": {"old": 1}, "other": {"kept": 1}}))
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/1").granted == 1000
    assert new_grant(end.ops, f"{ACCT}/plan:ai/1").granted == 10  # only the new plan has it: its first cycle
    [policies] = of(end.ops, ops.SetPolicies)
    assert set(policies.policies) == {"msgs", "ai", "seats", "other"} and policies.policies["other"] == {"kept": 1}
    assert policies.policies["msgs"] != {"old": 1}
    seats = new_grant(end.ops, f"{ACCT}/capacity:seats")
    assert (seats.granted, seats.cycle_no, seats.expires_ms) == (5, None, 0)
    [nc] = of(end.ops, ops.NextCycle)
    assert (nc.plan, nc.start_ms, nc.end_ms, nc.anchor_at_ms) == ("pro", B1, B2, ANCHOR)  # the same rhythm


def test_qc1_an_interval_change_anchors_the_cycles_at_the_boundary() -> None:
    cat = catalogue(BASIC, PRO)
    end = plan_cycle_end(facts(sub(k=3), cat, [], nxt=NextPlan("pro", PRO, "annual", {}), at=B1))
    [nc] = of(end.ops, ops.NextCycle)
    assert (nc.interval, nc.anchor_at_ms, nc.anchor_cycle_no, nc.end_ms) == ("annual", B1, 4, ms(2027, 2, 15))
    assert new_grant(end.ops, f"{ACCT}/plan:msgs/4").granted == 12_000


def test_fb6_a_pack_a_change_adds_is_granted_even_when_it_is_bought_once() -> None:
    cat = catalogue(BASIC, packs=[pack("starter", recurrence="once")])
    end = plan_cycle_end(facts(sub(), cat, [], nxt=NextPlan("basic", BASIC, "monthly", {"starter": 3})))
    assert new_grant(end.ops, f"{ACCT}/pack:starter/1").granted == 150


def test_fb6_fewer_packs_at_the_cycle_end_renew_the_new_quantity() -> None:
    cat = catalogue(BASIC, packs=[pack("boost")])
    end = plan_cycle_end(facts(sub(packs={"boost": 3}), cat, [row("pack:boost", 150)],
                               nxt=NextPlan("basic", BASIC, "monthly", {"boost": 1})))
    assert new_grant(end.ops, f"{ACCT}/pack:boost/1").granted == 50
    assert of(end.ops, ops.NextCycle)[0].packs == {"boost": 1}


# ---------------------------------------------------------------------------------------------
# capacity (QC2)
# ---------------------------------------------------------------------------------------------

SEATS = {"product": "chat"}


def cap(limit: int) -> Plan:
    return plan(f"seats{limit}", capacity={"seats": limit} if limit else {})


def test_qc2_a_capacity_grant_is_created_once_with_the_plan_limit() -> None:
    out = plan_capacity(ACCT, catalogue(), None, cap(5), 1000, "key-1", SEATS, {})
    [g] = out
    assert isinstance(g, ops.NewGrant)
    assert (g.grant_id, g.granted, g.expires_ms, g.item, g.cycle_no) == (f"{ACCT}/capacity:seats", 5, 0, "capacity:seats", None)
    assert [(e.kind, e.d_granted, e.key, e.attrs["item"]) for e in g.entries] == [("grant", 5, "key-1", "capacity:seats")]


def test_qc2_a_new_limit_moves_the_granted_seats() -> None:
    out = plan_capacity(ACCT, catalogue(), cap(5), cap(10), 1000, None, SEATS,
                        {"seats": {"granted": 5, "used": 2, "held": 0}})
    assert out[0] == ops.MoveGranted(f"{ACCT}/capacity:seats", 5)
    assert isinstance(out[1], ops.Entry) and (out[1].kind, out[1].d_granted, out[1].attrs["limit"]) == ("capacity_change", 5, 10)


def test_qc2_seats_in_use_stay_taken_when_the_limit_drops() -> None:
    current = {"seats": {"granted": 10, "used": 6, "held": 1}}
    out = plan_capacity(ACCT, catalogue(), cap(10), cap(3), 1000, None, SEATS, current)
    assert out[0] == ops.MoveGranted(f"{ACCT}/capacity:seats", -3)  # down to the 7 in use, not to 3
    assert plan_capacity(ACCT, catalogue(), cap(10), cap(0), 1000, None, SEATS,
                         {"seats": {"granted": 7, "used": 6, "held": 1}}) == []


def test_qc2_a_plan_without_capacity_creates_no_grant() -> None:
    assert plan_capacity(ACCT, catalogue(), None, cap(0), 1000, None, SEATS, {}) == []
