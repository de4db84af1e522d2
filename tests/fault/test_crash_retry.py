"""SPEC H4, N11: a key charged in the ledger is never answered DENIED on retry, after a crash.

The service process is killed with SIGKILL while its ledger batch is held on its way to Postgres;
the orphaned transaction then commits, so the ledger charged keys whose Redis records were never
confirmed. After QUOTA_PENDING_GRACE_MS the account is rebuilt (not lost: Redis kept its state), and
another caller exhausts the meter. Each retry must get the ledger's answer: GRANTED for every
charged key (it used to be decided afresh and answered DENIED QUOTA_EXHAUSTED, an answer then
replayed for 24 h), and nothing the ledger does not hold. See tests/fault/crash_retry.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from quota_service import embedded

from tests.fault.crash_retry import crash_and_retry


@pytest.mark.timeout(180)
async def test_h4_n11_retry_of_a_key_charged_before_a_crash_gets_the_ledger_answer(
        valkey: embedded.ValkeyProcess, pg_dsn: str, tmp_path: Path) -> None:
    res = await crash_and_retry(valkey.url, pg_dsn, tmp_path, crashes=1, calls=3)
    print(f"\nretries answered differently from the ledger: {len(res.mismatches)} "
          f"(keys retried {res.keys_retried}, charged before the retry {res.charged_before_retry})")
    assert res.charged_before_retry >= 1, "the orphaned transaction committed at least one key"
    assert not res.mismatches, res.mismatches
