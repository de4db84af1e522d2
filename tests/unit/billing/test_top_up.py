"""Top-ups (A1, QC13) and automatic top-ups (TA9) on plain data: the request, the subscription row and
the shipped catalogues in, the grant out. No database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from quota_service.catalogue import AutoTopUp, Catalogue, load_catalogue
from quota_service.catalogue.top_ups import NotSelfService
from quota_service.domain import validation as v
from quota_service.domain.billing import ops
from quota_service.domain.billing.settlement import collect_debts
from quota_service.domain.billing.top_up import (
    auto_top_up_needs_time_zone,
    check_top_up,
    grant_of,
    plan_auto_top_up,
    plan_top_up,
)
from quota_service.domain.model import GrantSpec
from quota_service.errors import FailedPrecondition, InvalidArgument

CATALOGUES = Path(__file__).resolve().parents[3] / "deploy" / "catalogues"
IDR = 100
NOW = 1_767_225_600_000  # 2026-01-01 00:00 UTC
CYCLE_END = 1_769_904_000_000  # 2026-02-01 00:00 UTC


@pytest.fixture(scope="module")
def conversation() -> Catalogue:
    return load_catalogue(CATALOGUES / "conversation.yaml")


@pytest.fixture(scope="module")
def chatbot() -> Catalogue:
    return load_catalogue(CATALOGUES / "ai_chatbot.yaml")


def sub(plan: str = "omnichannel", *, cycle_end_ms: int = CYCLE_END, interval: str = "calendar_month",
        **more: Any) -> dict[str, Any]:
    return {"account_id": "acct", "product": "x", "plan": plan, "interval": interval, "cycle_no": 2,
            "cycle_end_ms": cycle_end_ms, "anchor_at_ms": NOW, "anchor_cycle_no": 0, **more}


# --- A1: ad-hoc top-ups --------------------------------------------------------------------------


def test_a1_an_ad_hoc_top_up_takes_the_fields_as_given_priority_unset_is_100_and_0_is_a_priority() -> None:
    unset = grant_of(GrantSpec("$USD", 1_000), None, None, self_service=False)
    assert (unset.source, unset.priority, unset.item, unset.cycle_no, unset.expires_at_ms) == ("topup", 100, None, None, 0)
    zero = grant_of(GrantSpec("$USD", 1_000, priority=0, source="promo", label="Gift", overdraft_limit=5,
                              expires_at_ms=NOW + 10), None, None, self_service=False)
    assert (zero.source, zero.priority, zero.label, zero.overdraft_limit, zero.expires_at_ms) == (
        "promo", 0, "Gift", 5, NOW + 10)


def test_a1_a_top_up_starts_now_unless_asked_and_must_end_after_it_starts() -> None:
    assert check_top_up(GrantSpec("m", 5), False, NOW) == NOW
    assert check_top_up(GrantSpec("m", 5, starts_at_ms=NOW + 1), False, NOW) == NOW + 1
    with pytest.raises(InvalidArgument) as err:
        check_top_up(GrantSpec("m", 5, expires_at_ms=NOW), False, NOW)
    assert err.value.field == "grant.expires_at_ms"


def test_a1_the_new_grant_and_its_grant_entry_and_the_bucket_bound() -> None:
    spec = GrantSpec("$USD", 800)
    g = grant_of(spec, None, None, self_service=False)
    new = plan_top_up(spec, "g-1", g, NOW, 1_000, "key-1", NOW)
    assert (new.grant_id, new.bucket, new.granted, new.priority, new.starts_ms, new.item) == ("g-1", "$USD", 800, 100,
                                                                                             NOW, None)
    assert [(e.kind, e.d_granted, e.amount, e.key) for e in new.entries] == [("grant", 800, 800, "key-1")]
    with pytest.raises(FailedPrecondition, match="would hold more than"):
        plan_top_up(spec, "g-1", g, NOW, v.MAX_BUCKET_TOTAL - 799, "key-1", NOW)


def test_a1_debts_first_the_new_grant_pays_what_its_bucket_owes() -> None:
    """The ad-hoc wallet debt of the scenario: 1,000 adjusted by 1,500 leaves -500; a top-up of 800
    pays it and 300 is spendable."""
    new = plan_top_up(GrantSpec("$USD", 800), "second", grant_of(GrantSpec("$USD", 800), None, None, False), NOW, 0,
                      "k", NOW)
    rows = [{"grant_id": "first", "granted": 1_000, "used": 1_500, "held": 0, "item": None},
            {"grant_id": new.grant_id, "granted": new.granted, "used": new.used, "held": 0, "item": new.item}]
    paid = collect_debts(rows, "$USD", new.grant_id, NOW)
    assert paid.paid == 500 and ops.MoveUsed("second", 500) in paid.ops


# --- QC13: top-up kinds of the catalogue -----------------------------------------------------------


def test_qc13_a_wallet_top_up_kind_takes_priority_label_and_source_from_the_catalogue(conversation: Catalogue) -> None:
    g = grant_of(GrantSpec("$IDR", 100_000 * IDR, kind="additional_balance"), sub(), conversation, self_service=True)
    assert (g.source, g.priority, g.overdraft_limit, g.label, g.item, g.cycle_no) == (
        "topup", 20, 0, "Additional WhatsApp Balance", "top_up:additional_balance", None)
    assert g.expires_at_ms == 0, "the WhatsApp balance carries over (QC6): its top-ups do not end with the cycle"
    assert g.attrs == {"kind": "additional_balance", "self_service": True}


@pytest.mark.parametrize(("amount", "bound"), [(1, "min_amount_minor 10000000"),
                                               (10_000_000_001, "max_amount_minor 10000000000")])
def test_qc13_a_wallet_top_up_outside_the_kinds_bounds_is_refused_naming_the_bound(
        conversation: Catalogue, amount: int, bound: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        grant_of(GrantSpec("$IDR", amount, kind="additional_balance"), sub(), conversation, self_service=False)
    assert err.value.field == "grant.amount" and bound in err.value.reason and "additional_balance" in err.value.reason


def test_qc13_a_field_the_kind_sets_may_be_repeated_but_not_changed(conversation: Catalogue) -> None:
    same = GrantSpec("$IDR", 100_000 * IDR, kind="additional_balance", priority=20)
    assert grant_of(same, sub(), conversation, self_service=False).priority == 20
    with pytest.raises(InvalidArgument) as err:
        grant_of(dataclasses.replace(same, priority=5), sub(), conversation, self_service=False)
    assert err.value.field == "grant.priority"


def test_qc13_a_pack_ends_with_the_cycle_and_belongs_to_it(conversation: Catalogue) -> None:
    g = grant_of(GrantSpec("unique_visitor", 2_000, kind="unique_visitor_topup"), sub(), conversation, True)
    assert (g.priority, g.item, g.cycle_no, g.expires_at_ms, g.attrs["quantity"]) == (
        20, "pack:unique_visitor_topup", 2, CYCLE_END, 2)
    with pytest.raises(InvalidArgument, match="whole number of packs"):
        grant_of(GrantSpec("unique_visitor", 1_500, kind="unique_visitor_topup"), sub(), conversation, True)


def test_qc13_a_trials_open_ended_cycle_does_not_end_the_pack(conversation: Catalogue) -> None:
    g = grant_of(GrantSpec("unique_visitor", 1_000, kind="unique_visitor_topup"), sub(cycle_end_ms=v.MAX_TIME_MS),
                 conversation, True)
    assert g.expires_at_ms == 0


def test_qc13_a_self_service_caller_makes_only_self_service_kinds(chatbot: Catalogue) -> None:
    with pytest.raises(NotSelfService):
        check_top_up(GrantSpec("$IDR", 5), True, NOW)  # ad hoc: an admin's
    spec = GrantSpec("ai_dialog", 500, kind="extra_prepaid")
    with pytest.raises(NotSelfService):
        grant_of(spec, sub("starter"), chatbot, self_service=True)
    g = grant_of(spec, sub("starter"), chatbot, self_service=False)
    assert (g.priority, g.overdraft_limit, g.item) == (20, 100, "pack:extra_prepaid")


def test_qc13_a_kind_needs_the_catalogue_of_a_subscription(conversation: Catalogue) -> None:
    spec = GrantSpec("$IDR", 100_000 * IDR, kind="additional_balance")
    for s, cat in ((None, conversation), (sub(), None)):
        with pytest.raises(FailedPrecondition, match="top-up kinds come from the catalogue"):
            grant_of(spec, s, cat, self_service=False)
    with pytest.raises(InvalidArgument) as err:
        check_top_up(dataclasses.replace(spec, starts_at_ms=NOW), False, NOW)
    assert err.value.field == "grant.starts_at_ms"


# --- TA9: the automatic top-up --------------------------------------------------------------------

AUTO = AutoTopUp(amount_minor=5_000, max_per_cycle=3, priority=20, carry_over_cycles=1)


def test_ta9_the_automatic_top_up_with_its_entry() -> None:
    g = plan_auto_top_up(sub(), AUTO, "USD", 1, "UTC", "req-1", NOW)
    assert g is not None
    assert (g.grant_id, g.bucket, g.source, g.priority, g.granted, g.item, g.cycle_no) == (
        "acct/auto_top_up:USD/2/1", "$USD", "auto_topup", 20, 5_000, "auto_top_up:USD", 2)
    (e,) = g.entries
    assert (e.kind, e.d_granted, e.attrs) == ("auto_top_up", 5_000, {"cycle": 2, "number": 2, "max_per_cycle": 3,
                                                                    "for_key": "req-1"})


def test_ta9_at_most_max_per_cycle_a_cycle() -> None:
    assert plan_auto_top_up(sub(), AUTO, "USD", 2, "UTC", "k", NOW) is not None
    assert plan_auto_top_up(sub(), AUTO, "USD", 3, "UTC", "k", NOW) is None
    assert plan_auto_top_up(sub(), AUTO, "USD", 4, None, "k", NOW) is None


def test_ta9_kept_carry_over_cycles_more_cycles_in_the_accounts_time_zone() -> None:
    # cycle 2 of a calendar-month subscription that began on 2026-01-01 is March; one more: April
    utc = plan_auto_top_up(sub(), AUTO, "USD", 0, "UTC", "k", NOW)
    jakarta = plan_auto_top_up(sub(), AUTO, "USD", 0, "Asia/Jakarta", "k", NOW)
    assert utc is not None and jakarta is not None
    assert utc.expires_ms == int(dt.datetime(2026, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert utc.expires_ms - jakarta.expires_ms == 7 * 3_600_000


def test_ta9_without_carry_over_cycles_or_in_a_trial_it_is_kept_as_the_wallet_keeps_it() -> None:
    forever = dataclasses.replace(AUTO, carry_over_cycles=None)
    assert not auto_top_up_needs_time_zone(forever, "calendar_month")
    assert not auto_top_up_needs_time_zone(AUTO, "trial")
    assert auto_top_up_needs_time_zone(AUTO, "calendar_month")
    g = plan_auto_top_up(sub(), forever, "USD", 0, None, "k", NOW)
    trial = plan_auto_top_up(sub(interval="trial"), AUTO, "USD", 0, None, "k", NOW)
    assert g is not None and trial is not None and g.expires_ms == 0 and trial.expires_ms == 0
    with pytest.raises(ValueError, match="time zone"):
        plan_auto_top_up(sub(), AUTO, "USD", 0, None, "k", NOW)


def test_ta9_debts_first_an_automatic_top_up_pays_what_the_wallet_owes() -> None:
    g = plan_auto_top_up(sub(), AUTO, "USD", 0, "UTC", "k", NOW)
    assert g is not None
    rows = [{"grant_id": "debt", "granted": 0, "used": 2_000, "held": 0, "item": None},
            {"grant_id": g.grant_id, "granted": g.granted, "used": 0, "held": 0, "item": g.item}]
    paid = collect_debts(rows, g.bucket, g.grant_id, NOW)
    assert paid.paid == 2_000
