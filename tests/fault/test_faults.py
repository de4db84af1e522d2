"""SPEC N1-N3, H7: faults injected into real processes under concurrent load.

Each scenario (see tests/fault/scenarios.py) runs 16 consumers against 4 accounts whose total
supply is smaller than the demand, injects its fault once 30 % of the supply is acknowledged, and
audits the ledger afterwards; the crash-retry and clock-skew scenarios run on their own and fill
the same figures (their own counts: `retry≠ledger`, skew denials reported as errors). The figures
are printed (pytest -s) and summarised at the end of the
run; `python -m tests.fault.run --long` runs longer versions.

Asserted: no over-grant, no acknowledged grant missing from the ledger, no duplicate effect, grants
resume after the fault, no error other than UNAVAILABLE, balances come to equal the ledger (and the
consistency check, `Verify`, finds no difference in Postgres or Redis), every
acknowledged key sent again is replayed as GRANTED, and no caller charged in the ledger was answered
anything but GRANTED. Reported but not asserted: `gave_up`, calls left without an answer after all
their attempts - a known service bug (test_lost_redis_reply.py) keeps a key UNAVAILABLE when its
Redis reply was lost, which a busy machine can cause.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.scenarios import CI, FIGURES, SCENARIOS, format_table, run_scenario
from tests.support.owned_backends import OwnedPostgres


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_fault_under_load(name: str, owned_pg: OwnedPostgres, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]()
    figures = await run_scenario(scenario, owned_pg, CI, tmp_path)
    FIGURES.append(figures)
    print(f"\n{scenario.title}\n{format_table([figures])}")

    assert "inject_error" not in figures.notes, figures.notes["inject_error"]
    assert figures.injections >= 1, "the fault was injected"
    assert figures.over_grants == 0, "no units granted beyond the supply (acknowledged or in the ledger)"
    assert figures.missing == 0, "every acknowledged grant is in the ledger"
    assert figures.duplicates == 0, "no idempotency key has two effects"
    assert figures.recover_s is not None, "grants resumed after the fault"
    assert not figures.errors, f"no error other than UNAVAILABLE: {figures.errors[:5]}"
    assert not figures.balance_mismatch, f"balances agree with the ledger: {figures.balance_mismatch}"
    assert not figures.verify_differences, f"the consistency check finds nothing: {figures.verify_differences}"
    assert not figures.wrong_replays, f"acknowledged keys replay GRANTED: {figures.wrong_replays[:5]}"
    assert figures.charged_but_told_otherwise == 0, f"charged callers were told GRANTED: {figures.unacked_details[:5]}"
