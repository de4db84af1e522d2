"""The events table of migration 016: the alert events stored before it keep their numbers (a
WatchAlerts caller resumes where it was), new events number on from there, ids are stable and
unique, and an insert notifies the readers."""

from __future__ import annotations

import asyncio
import json
import re

import asyncpg
from quota_service.storage.postgres import apply_functions, migrations

from tests.integration.test_schema import fresh  # noqa: F401  (the fixture)

EVENT_ID = re.compile(r"evt_[0-9A-HJKMNP-TV-Z]{26}")


async def test_016_carries_the_alert_events_over_with_their_numbers(fresh: asyncpg.Connection) -> None:  # noqa: F811
    for version, _, sql in migrations():
        if version < 16:
            await fresh.execute(sql)
    for cycle in (0, 1, 2):
        await fresh.execute("INSERT INTO alert_events (account_id, org_id, meter, threshold_pct_left, cycle_start_ms, "
                            "occurred_at, idempotency_key) VALUES ('acme', 'org', 'ai_dialog', 40, $1, now(), $2)",
                            cycle, f"k{cycle}")
    await fresh.execute("DELETE FROM alert_events WHERE cycle_start_ms = 1")  # a gap (retention)
    for version, _, sql in migrations():
        if version >= 16:
            await fresh.execute(sql)
    await apply_functions(fresh)
    rows = await fresh.fetch("SELECT event_seq, event_id, type, org_id, data FROM events ORDER BY event_seq")
    assert [r["event_seq"] for r in rows] == [1, 3]
    assert all(r["type"] == "alert.triggered" and EVENT_ID.fullmatch(r["event_id"]) for r in rows)
    assert json.loads(rows[1]["data"]) == {"account_id": "acme", "organization_id": "org", "meter": "ai_dialog",
                                           "cycle_start_ms": 2, "threshold_pct_left": 40, "idempotency_key": "k2"}
    heard: asyncio.Queue[str] = asyncio.Queue()
    await fresh.add_listener("quota_events", lambda *args: heard.put_nowait(args[3]))
    seq = await fresh.fetchval("INSERT INTO events (type, account_id, occurred_at, data) "
                               "VALUES ('cycle.rolled', 'acme', now(), '{}') RETURNING event_seq")
    assert seq == 4
    async with asyncio.timeout(5):
        assert await heard.get() == "acme"
    ids = await fresh.fetch("SELECT quota_event_id() AS id FROM generate_series(1, 2000)")
    assert len({r["id"] for r in ids}) == 2000 and all(EVENT_ID.fullmatch(r["id"]) for r in ids)
