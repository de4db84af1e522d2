"""The pure comparisons of the consistency check (N4): the projection against the ledger's sums, and
Redis against the projection, on plain values."""

from __future__ import annotations

from quota_service.domain.consistency import Difference, RedisView, ledger_differences, redis_differences

NOW = 1_000_000


def row(granted: int = 10, used: int = 0, held: int = 0, expires_at_ms: int = 0) -> dict[str, int]:
    return {"granted": granted, "used": used, "held": held, "overdraft_limit": 0, "priority": 100,
            "expires_at_ms": expires_at_ms}


def cached(granted: int = 10, used: int = 0, held: int = 0, expires_at_ms: int = 0) -> dict[str, int]:
    return {"gr": granted, "u": used, "h": held, "od": 0, "p": 100, "e": expires_at_ms, "b": 1}


def view(grants: dict[str, dict[str, int]], holds: dict[str, dict[str, object]] | None = None) -> RedisView:
    return RedisView(3, 7, grants, holds or {}, {})


def test_n4_projection_equal_to_the_ledger_has_no_difference() -> None:
    grants = {"g1": row(10, 4, 2)}
    sums = {"g1": {"granted": 10, "used": 4, "held": 2}}
    assert ledger_differences("a", grants, sums, [("h1", NOW + 1, "g1", 2)]) == []


def test_n4_projection_differences_name_the_grant_the_field_and_both_numbers() -> None:
    grants = {"g1": row(10, 9, 0), "g2": row(5, 0, 3)}
    sums = {"g1": {"granted": 10, "used": 4, "held": 0}, "g2": {"granted": 5, "used": 0, "held": 3},
            "ghost": {"granted": 7, "used": 0, "held": 0}}
    out = ledger_differences("a", grants, sums, [])
    assert [(d.grant_id, d.field, d.expected, d.actual) for d in out] == [
        ("g1", "used", 4, 9), ("ghost", "grant", 1, 0), ("g2", "held", 0, 3)]
    assert {d.store for d in out} == {"postgres"} and not any(d.repaired for d in out)


def test_n4_redis_equal_to_postgres_has_no_difference() -> None:
    assert redis_differences("a", {"g1": row(10, 4)}, [], view({"g1": cached(10, 4)}), NOW) == []


def test_n4_a_hold_past_its_time_counts_as_returned_on_both_sides() -> None:
    # Postgres's sweeper returned it, Redis not yet: the same once due holds count as returned
    redis = view({"g1": cached(10, 0, 5)}, {"h1": {"exp": NOW, "rows": [{"g": "g1", "b": "m", "a": 5}]}})
    assert redis_differences("a", {"g1": row(10, 0, 0)}, [], redis, NOW) == []
    # the other way round: Redis returned it, the sweeper has not
    assert redis_differences("a", {"g1": row(10, 0, 5)}, [("h1", NOW, "g1", 5)], view({"g1": cached(10)}), NOW) == []
    # a hold still running must be on both sides
    running = view({"g1": cached(10, 0, 5)}, {"h1": {"exp": NOW + 1, "rows": [{"g": "g1", "b": "m", "a": 5}]}})
    assert redis_differences("a", {"g1": row(10, 0, 0)}, [], running, NOW) == [
        Difference("a", "g1", "redis", "held", 0, 5)]


def test_n4_missing_and_extra_grants_in_redis() -> None:
    grants = {"live": row(), "ended": row(expires_at_ms=NOW), "later": row(expires_at_ms=NOW + 1)}
    out = redis_differences("a", grants, [], view({"stray": cached()}), NOW)
    assert [(d.grant_id, d.field, d.expected, d.actual) for d in out] == [
        ("later", "grant", 1, 0), ("live", "grant", 1, 0), ("stray", "grant", 0, 1)]


def test_n4_an_empty_hold_list_from_cjson_is_read_as_no_rows() -> None:
    redis = view({"g1": cached(10)}, {"h1": {"exp": NOW, "rows": {}}})
    assert redis_differences("a", {"g1": row(10)}, [], redis, NOW) == []


def test_n4_quiet_means_no_mutation_between_the_reads_and_none_unconfirmed() -> None:
    first = RedisView(3, 7, {}, {}, {})
    assert RedisView(3, 7, {}, {}, {}).quiet_since(first)
    assert not RedisView(3, 8, {}, {}, {}).quiet_since(first)
    assert not RedisView(4, 7, {}, {}, {}).quiet_since(first)
    assert not RedisView(3, 7, {}, {}, {"k": NOW}).quiet_since(first)
